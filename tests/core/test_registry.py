"""Registry, factory, config overrides and entry-point discovery."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import vlzoo.core as vz
from vlzoo.core import plugins, registry
from vlzoo.core.errors import ConfigError, UnknownModelError
from vlzoo.core.towers import encoder_layers


def test_standard_models_are_registered():
    names = vz.list_models()
    for required in ("clip-vit-b-32", "clip-vit-b-16", "clip-vit-l-14", "clip-rn50", "clip-vit-tiny"):
        assert required in names
    assert names == sorted(names)


def test_list_models_filters_with_fnmatch_and_lists_tags():
    assert vz.list_models("clip-vit-b-*") == ["clip-vit-b-16", "clip-vit-b-32"]
    tagged = vz.list_models("clip-vit-b-32:*", pretrained=True)
    assert "clip-vit-b-32:openai" in tagged
    assert all(n.startswith("clip-vit-b-32:") for n in tagged)


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownModelError) as err:
        vz.create_model("clip-vit-b32")
    assert "clip-vit-b-32" in str(err.value)
    assert "clip-vit-b32" in str(err.value)


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match=r"embed_dimm.*did you mean embed_dim"):
        vz.create_model("clip-vit-tiny", embed_dimm=32)
    with pytest.raises(ConfigError, match=r"clip-vit-tiny\.vision\.image_sise"):
        vz.create_model("clip-vit-tiny", vision={"image_sise": 32})


def test_override_of_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match=r"embed_dim.*expects int.*str"):
        vz.get_model_config("clip-vit-tiny", embed_dim="big")
    with pytest.raises(ConfigError, match=r"init_logit_scale.*expects float.*bool"):
        vz.get_model_config("clip-vit-tiny", init_logit_scale=True)


def test_nested_override_builds_a_different_model():
    model = vz.create_model("clip-vit-tiny", embed_dim=48, vision={"image_size": 32}, text={"layers": 1})
    assert model.config.embed_dim == 48
    assert model.visual.trunk.patch_embed.img_size == (32, 32)
    assert len(encoder_layers(model.text.transformer)) == 1
    feats = model.encode_image(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 48)


def test_configs_are_copies():
    cfg = vz.get_model_config("clip-vit-tiny")
    cfg.vision.timm_kwargs["depth"] = 99
    cfg.embed_dim = 7
    fresh = vz.get_model_config("clip-vit-tiny")
    assert fresh.vision.timm_kwargs["depth"] == 4
    assert fresh.embed_dim == 64


def test_model_info_counts_the_built_parameters():
    info = vz.model_info("clip-vit-tiny")
    built = vz.create_model("clip-vit-tiny")
    assert info["num_params"] == sum(p.numel() for p in built.parameters())
    assert info["config"]["embed_dim"] == 64
    assert "openai" in vz.model_info("clip-vit-b-32")["pretrained"]


def test_dual_encoder_temperature_and_bias():
    model = vz.create_model("clip-vit-tiny")
    assert math.isclose(model.scale().item(), 1 / 0.07, rel_tol=1e-5)
    assert model.logit_bias is None
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) ≫ 100
    assert model.scale().item() == pytest.approx(100.0)
    siglip = vz.create_model("siglip-vit-tiny")
    out = siglip(torch.randn(2, 3, 64, 64), vz.get_tokenizer("siglip-vit-tiny")(["a", "b"]))
    assert out["logit_bias"].item() == pytest.approx(-10.0)
    assert set(out) == {"image_features", "text_features", "logit_scale", "logit_bias"}
    norms = out["image_features"].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_register_model_rejects_a_second_owner():
    @vz.register_model("test-registry-owned")
    def owned():
        return vz.get_model_config("clip-vit-tiny")

    def impostor():
        return vz.get_model_config("clip-vit-tiny")

    impostor.__module__ = "someone.else"  # the same name from another package would shadow the first
    try:
        with pytest.raises(ConfigError, match="registered twice"):
            vz.register_model("test-registry-owned")(impostor)
    finally:
        registry._REGISTRY.pop("test-registry-owned", None)


def _fake_distribution(root: Path, dist: str, module: str, body: str) -> None:
    """A module plus `.dist-info` with a `vlzoo.models` entry point, as pip would install it."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[vlzoo.models]\n{dist} = {module}\n")


def test_entry_point_plugins_are_discovered_lazily(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "vlzoo_toy_domain",
        "vlzoo_toy_domain_models",
        """
        from vlzoo.core import register_model, get_model_config

        @register_model("toy-domain-clip")
        def toy():
            return get_model_config("clip-vit-tiny", embed_dim=16)
        """,
    )
    _fake_distribution(
        tmp_path, "vlzoo_broken_domain", "vlzoo_broken_models", "raise ImportError('no field lib')"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy-domain-clip" not in registry._REGISTRY
    try:
        plugins._discovered = False  # as in a fresh process: nothing looked up yet
        with pytest.warns(UserWarning, match="vlzoo_broken_models.*no field lib"):
            names = vz.list_models()
        assert "toy-domain-clip" in names
        assert "vlzoo_toy_domain_models" in sys.modules
        assert vz.create_model("toy-domain-clip").config.embed_dim == 16
    finally:
        registry._REGISTRY.pop("toy-domain-clip", None)
        sys.modules.pop("vlzoo_toy_domain_models", None)
        plugins._discovered = False


def test_get_transforms_follow_the_vision_config():
    from PIL import Image

    mean = vz.get_model_config("clip-vit-tiny").vision.mean
    pixel = tuple(round(m * 255) for m in mean)
    image = Image.new("RGB", (100, 80), pixel)
    for train in (False, True):
        out = vz.get_transforms("clip-vit-tiny", train=train)(image)
        assert out.shape == (3, 64, 64)
        assert out.abs().max() < 0.02  # the mean colour normalizes to ~0
    with pytest.raises(ConfigError):
        vz.get_transforms("clip-vit-tiny", train=False, vision={"interp": "x"})


def test_resolve_config_layers_defaults_saved_config_required_and_overrides(tmp_path):
    cfg, source = vz.resolve_config("clip-vit-tiny", embed_dim=48)
    assert source is None and cfg.embed_dim == 48

    path = vz.weights.save(vz.create_model("clip-vit-tiny", embed_dim=48), tmp_path)
    cfg, source = vz.resolve_config("clip-vit-tiny", pretrained=path)
    assert cfg.embed_dim == 48 and source.path == path  # the saved config, not the registry's 64
    cfg, _ = vz.resolve_config("clip-vit-tiny", pretrained=path, text={"layers": 1})
    assert (cfg.embed_dim, cfg.text.layers) == (48, 1)

    # A tag's required settings apply without a download, and an override may not contradict them.
    cfg, source = vz.resolve_config("clip-vit-b-32:openai")
    assert source.spec is vz.get_pretrained_spec("clip-vit-b-32", "openai")
    assert cfg.text.act == "quick_gelu"
    with pytest.raises(ConfigError, match=r"need text\.act='quick_gelu', not 'gelu'"):
        vz.resolve_config("clip-vit-b-32", pretrained="openai", text={"act": "gelu"})


def _registered_fn(module: str):
    def fn(*args, **kwargs):
        return args

    fn.__module__ = module
    return fn


# what → (register(name, fn), (module, table attribute), lookup(name) -> the registered fn, a name)
_REGISTRIES = {
    "model": (
        lambda name, fn: vz.register_model(name)(fn),
        (registry, "_REGISTRY"),
        lambda name: registry.model_entry(name).config_fn,
        "test-dup-model",
    ),
    "data kind": (
        lambda name, fn: vz.data.register_data_kind(name, fn),
        ("vlzoo.core.data.kinds", "_KINDS"),
        lambda name: vz.data.get_data_kind(name).build,
        "test-dup-kind",
    ),
    "generated dataset": (
        lambda name, fn: vz.data.register_generated_dataset(name, fn, "dup.json"),
        ("vlzoo.core.data.kinds", "_GENERATED"),
        lambda name: vz.data.get_generated_dataset(name).write,
        "test-dup-generated",
    ),
    "weights converter": (
        vz.weights.register_converter,
        ("vlzoo.core.weights.convert", "CONVERTERS"),
        lambda name: sys.modules["vlzoo.core.weights.convert"].CONVERTERS[name],
        "test-dup-converter",
    ),
    "image decoder for": (
        vz.data.register_image_decoder,
        ("vlzoo.core.data.sources", "_DECODERS"),
        lambda name: sys.modules["vlzoo.core.data.sources"]._DECODERS[name],
        ".test-dup",
    ),
}


@pytest.mark.parametrize("what", sorted(_REGISTRIES))
def test_every_registry_refuses_another_modules_name_and_lets_the_owner_register_again(what, monkeypatch):
    register, (module, table), lookup, name = _REGISTRIES[what]
    plugins.discover_plugins()  # domains register into the real tables, before they are swapped below
    module = sys.modules[module] if isinstance(module, str) else module
    monkeypatch.setattr(module, table, dict(getattr(module, table)))  # this test's entries go with it

    first, reloaded, impostor = (_registered_fn(m) for m in ("pkg_a.models", "pkg_a.models", "pkg_b.models"))
    register(name, first)
    register(name, reloaded)  # the same module again (a reload) replaces its own entry
    assert lookup(name) is reloaded
    with pytest.raises(
        ConfigError, match=rf"{what} '{name}' is registered twice: by pkg_a.models and by pkg_b"
    ):
        register(name, impostor)
    assert lookup(name) is reloaded


def test_the_core_registries_start_with_owned_entries_only():
    """PIL is the fallback decoder, not an owner of `.tif`: a domain may plug its multi-band reader in."""
    sources = sys.modules["vlzoo.core.data.sources"]
    assert not any(plugins.owner_of(d) == "vlzoo.core.data.sources" for d in sources._DECODERS.values())
    assert plugins.owner_of(vz.data.get_data_kind("csv")) == "vlzoo.core.data.kinds"
