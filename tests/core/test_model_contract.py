"""The zoo model contract (vlzoo.core.models.contract), checked over the whole registry, timm-style: a new model
is tested by registering it.

Every tiny model: build, `forward(batch)` on a batch of its own toy data gives a finite scalar loss, backward
reaches exactly the trainable parameters, save → `create_model(pretrained=path)` gives identical outputs,
`model_info` works offline. Every full-size model: built on the meta device from its configs alone
(`structure_only`: no pretrained tower, hub config or tokenizer is fetched, offline) and checked statically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import vlzoo.core as vz
from vlzoo.core import WeightSpec, register_model, registry
from vlzoo.core.errors import ConfigError, WeightsError
from vlzoo.core.models import check_forward_output, check_model, has_capability, require_capability, toy_data
from vlzoo.core.registry import create_model, get_model_config, model_entry, model_info
from vlzoo.core.towers import structure_only
from vlzoo.core.train import ImageTextDataModule
from vlzoo.core.weights.checkpoint import save

# The models the installed distributions register (test modules register throwaway ones of their own).
INSTALLED_MODELS = [n for n in vz.list_models() if model_entry(n).module.startswith("vlzoo.")]
TINY_MODELS = [n for n in INSTALLED_MODELS if "tiny" in n]
FULL_SIZE_MODELS = sorted(set(INSTALLED_MODELS) - set(TINY_MODELS))

# One writer per family; the med-toyworld writer makes the 2D, 3D and concept files at once.
_GENERATE = {
    "toyworld": {"n_train": 8, "n_val": 4, "n_test": 4, "image_size": 32},
    "med-toyworld": {"n_train": 8, "n_val": 4, "n_test": 4},
    "rs-toyworld": {"n_train": 8, "n_val": 4, "n_test": 4},
    "person-toyworld": {"n_train": 4, "n_val": 2, "n_test": 2},  # identities
    "face-toyworld": {"n_train": 8, "n_val": 4, "n_test": 4},
    "ocr-toyworld": {"n_train": 8, "n_val": 4, "n_test": 4},
    "ocr-words": {"n_train": 8, "n_test": 4},
    "robot-toyworld": {"n_train": 2, "n_val": 1, "n_test": 1},  # clips
    "geo-toyworld": {"n_train": 8, "n_val": 4, "n_test": 4},
}


def _family(dataset: str) -> str:
    return "med-toyworld" if dataset.startswith("med-toyworld") else dataset


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLZOO_OFFLINE", "1")


@pytest.fixture(scope="session")
def toy_batch(tmp_path_factory: pytest.TempPathFactory):
    """`toy_batch(name)`: a training batch of 4 from the model's own generated dataset (each written once)."""
    root = tmp_path_factory.mktemp("contract_toy_data")
    batches: dict[str, Mapping[str, Any]] = {}

    def make(name: str) -> Mapping[str, Any]:
        if name not in batches:
            dataset = toy_data(get_model_config(name))
            family = _family(dataset)
            data = ImageTextDataModule(
                data=dataset,
                model=name,
                data_dir=str(root / family),
                generate=_GENERATE.get(family),
                batch_size=4,
                num_workers=0,
            )
            data.prepare_data()
            data.setup("fit")
            batches[name] = next(iter(data.train_dataloader()))
        return batches[name]

    return make


def _seeded_forward(model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Any]:
    torch.manual_seed(0)  # losses that sample (MLM masks, hard negatives, crops) sample the same way
    return model(batch)


def gradient_problems(model: nn.Module) -> list[str]:
    """After a backward: trainable parameters the loss never reached, frozen ones that got a gradient."""
    missed = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    problems = []
    if missed:
        problems.append(f"the loss reaches no gradient to trainable parameters {missed[:8]} ({len(missed)})")
    if frozen:
        problems.append(f"frozen parameters received a gradient: {frozen[:8]}")
    return problems


def assert_honours_contract(model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """Build-time faces, `forward(batch)` → finite scalar loss, backward to exactly the trainable params."""
    problems = check_model(model)
    assert not problems, problems
    model.train()
    out = _seeded_forward(model, batch)
    assert not check_forward_output(out), check_forward_output(out)
    model.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert not gradient_problems(model), gradient_problems(model)
    return out


def _tensors(out: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if torch.is_tensor(v)}


# ------------------------------------------------------------------------------------- tiny models


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_honours_the_contract(name: str, toy_batch, tmp_path: Path):
    batch = toy_batch(name)
    torch.manual_seed(0)
    model = create_model(name)
    assert_honours_contract(model, batch)

    # save → create_model(pretrained=path): the same model, output for output, in eval mode
    model.eval()
    path = save(model, tmp_path / "model.safetensors")
    reloaded = create_model(name, pretrained=path).eval()
    assert dataclasses.asdict(reloaded.config) == dataclasses.asdict(model.config)
    with torch.no_grad():
        expected, got = _tensors(_seeded_forward(model, batch)), _tensors(_seeded_forward(reloaded, batch))
    assert expected.keys() == got.keys() and "loss" in got
    for key, value in expected.items():
        assert torch.equal(value, got[key]), f"{name}: output {key!r} differs after save → load"

    info = model_info(name)
    assert info["name"] == name and info["config_class"] == type(model.config).__name__
    assert info["num_params"] == sum(p.numel() for p in model.parameters())


def test_every_registered_model_is_covered():
    installed = {n for n in vz.list_models() if model_entry(n).module.startswith("vlzoo.")}
    assert TINY_MODELS and set(TINY_MODELS) | set(FULL_SIZE_MODELS) == installed


# -------------------------------------------------------------------------------- full-size models


@pytest.mark.parametrize("name", FULL_SIZE_MODELS)
def test_full_size_model_builds_on_meta_and_honours_the_contract(name: str):
    with structure_only(), torch.device("meta"):
        model = get_model_config(name).build()
    assert all(p.is_meta for p in model.parameters())
    assert check_model(model) == []
    assert model_info(name)["num_params"] == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------- vlzoo's own training checkpoint as pretrained=


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A `last.ckpt` as `vlzoo fit` writes it (Lightning's checkpoint of ZooModule, weights under `model.`),
    of a run with a model override, and the zoo model it holds."""
    import lightning as L

    from vlzoo.core.train import ZooModule

    torch.manual_seed(0)
    module = ZooModule(model="clip-vit-tiny", model_overrides={"vision": {"image_size": 48}})
    root = tmp_path_factory.mktemp("lightning_ckpt")
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=root
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(root / "last.ckpt")
    return root / "last.ckpt", module.model


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    theirs = b.state_dict()
    return a.state_dict().keys() == theirs.keys() and all(
        torch.equal(v, theirs[k]) for k, v in a.state_dict().items()
    )


def test_a_lightning_last_ckpt_loads_as_pretrained_with_the_runs_config(lightning_ckpt):
    path, trained = lightning_ckpt
    model = create_model("clip-vit-tiny", pretrained=path)
    assert model.config.vision.image_size == 48  # the run's model_overrides, read from the checkpoint
    assert _same_weights(model, trained)


def test_a_lightning_last_ckpt_starts_a_recipe_through_model_pretrained(lightning_ckpt):
    from vlzoo.core.train import ZooModule

    path, trained = lightning_ckpt
    assert _same_weights(ZooModule(model="clip-vit-tiny", pretrained=str(path)).model, trained)


def test_another_models_lightning_ckpt_is_refused_by_name(lightning_ckpt):
    path, _ = lightning_ckpt
    with pytest.raises(
        WeightsError, match=r"training checkpoint of 'clip-vit-tiny', not of 'siglip-vit-tiny'"
    ):
        create_model("siglip-vit-tiny", pretrained=path)


def test_a_run_started_from_a_tag_reloads_with_what_that_tags_weights_need(lightning_ckpt, tmp_path: Path):
    """A run from weights that need QuickGELU saves QuickGELU weights: its checkpoint is rebuilt with it."""
    quick = WeightSpec.from_url(
        "http://127.0.0.1:9/never-fetched.safetensors",
        "0" * 64,
        config_overrides={"text": {"act": "quick_gelu"}},
    )
    register_model("contract-ckpt-probe", pretrained={"quick": quick})(
        lambda: get_model_config("clip-vit-tiny")
    )
    try:
        _, trained = lightning_ckpt
        state = {f"model.{k}": v for k, v in trained.state_dict().items()}
        hparams = {
            "model": "contract-ckpt-probe",
            "pretrained": "quick",
            "model_overrides": {"vision": {"image_size": 48}},
        }
        torch.save({"state_dict": state, "hyper_parameters": hparams, "epoch": 1}, tmp_path / "last.ckpt")
        model = create_model("contract-ckpt-probe", pretrained=tmp_path / "last.ckpt")
        assert (model.config.text.act, model.config.vision.image_size) == ("quick_gelu", 48)
    finally:
        registry._REGISTRY.pop("contract-ckpt-probe", None)


def test_a_checkpoint_of_a_run_that_started_from_itself_loads(lightning_ckpt, tmp_path: Path):
    """`--model.pretrained runs/a/last.ckpt` with the run writing runs/a/last.ckpt again: no endless lookup."""
    _, trained = lightning_ckpt
    path = tmp_path / "last.ckpt"
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    hparams = {
        "model": "clip-vit-tiny",
        "pretrained": str(path),
        "model_overrides": {"vision": {"image_size": 48}},
    }
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    assert _same_weights(create_model("clip-vit-tiny", pretrained=path), trained)


# ------------------------------------------------------------------------ a model that breaks it


@dataclasses.dataclass
class BrokenConfig:
    returns_loss: bool = False
    uses_every_param: bool = True

    def build(self) -> BrokenModel:
        return BrokenModel(self)


class BrokenModel(nn.Module):
    """A model as a contributor might first write one: its forward returns logits only, or trains a head
    that the loss never reaches."""

    def __init__(self, cfg: BrokenConfig):
        super().__init__()
        self.config = cfg
        self.proj = nn.Linear(3, 2)
        self.unused_head = nn.Linear(2, 2)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.proj(batch["image"].mean((2, 3)))
        if not self.config.uses_every_param:
            return {"loss": logits.square().mean()}
        logits = self.unused_head(logits)
        return (
            {"loss": logits.square().mean(), "logits": logits}
            if self.config.returns_loss
            else {"logits": logits}
        )

    def no_weight_decay(self) -> set[str]:
        return {"proj.bias", "logit_scale"}  # logit_scale: a parameter it doesn't have


BROKEN_BATCH = {"image": torch.ones(2, 3, 4, 4)}


def test_a_model_whose_forward_returns_no_loss_fails_naming_it():
    model = BrokenModel(BrokenConfig(returns_loss=False))
    model.no_weight_decay = lambda: {"proj.bias"}
    assert check_model(model, BROKEN_BATCH) == ["forward(batch) returned no 'loss' (keys: ['logits'])"]
    with pytest.raises(AssertionError, match="returned no 'loss'"):
        assert_honours_contract(model, BROKEN_BATCH)


def test_a_model_without_config_fails_naming_it():
    model = BrokenModel(BrokenConfig(returns_loss=True))
    del model.config
    problems = check_model(model)
    assert problems and "has no 'config' attribute" in problems[0]


def test_a_config_without_build_and_a_wrong_no_weight_decay_are_named():
    model = BrokenModel(BrokenConfig(returns_loss=True))
    model.config = {"returns_loss": True}  # a dict, not the config dataclass
    problems = check_model(model)
    assert "BrokenModel.config (dict) has no build() method" in problems
    assert any("no_weight_decay() names ['logit_scale']" in p for p in problems)


def test_a_trainable_parameter_the_loss_never_reaches_fails_naming_it():
    model = BrokenModel(BrokenConfig(returns_loss=True, uses_every_param=False))
    model.no_weight_decay = lambda: {"proj.bias"}
    with pytest.raises(
        AssertionError, match=r"trainable parameters \['unused_head.weight', 'unused_head.bias'\]"
    ):
        assert_honours_contract(model, BROKEN_BATCH)


def test_a_missing_capability_is_a_config_error_naming_the_key_and_the_model():
    model = BrokenModel(BrokenConfig())
    assert not has_capability(model, "replaceable_loss")
    with pytest.raises(
        ConfigError, match=r"model\.loss: model 'broken-tiny' \(BrokenModel\).*no set_loss\(\)"
    ):
        require_capability(model, "replaceable_loss", key="model.loss", model_name="broken-tiny")
    with pytest.raises(ConfigError, match="unknown capability 'flying'"):
        has_capability(model, "flying")
