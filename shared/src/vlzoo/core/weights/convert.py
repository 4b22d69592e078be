"""State-dict converters: weights saved by open_clip and by Hugging Face `CLIPModel` → vlzoo's key layout.

vlzoo's CLIP is a timm ViT (`visual.trunk.*`) and transformers' `CLIPTextModel` (`text.transformer.*`) with
bias-free projections (`visual.head`, `text.head`). Each converter is a table of key renames plus the few
tensors whose layout differs; `CONVERTERS` maps the names used in `WeightSpec.converter` to them.

A converter is `fn(state_dict, model) -> state_dict`, as timm's `checkpoint_filter_fn`: it receives the model
being loaded (already built), so it can read shapes or build a part it converts for without looking the
model up in the registry; the weights layer stays below the registry. `model` may be `None` when a
converter is called on its own; converters that need it say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from vlzoo.core.errors import WeightsError
from vlzoo.core.plugins import register_unique
from vlzoo.core.weights.io import load_state_dict

StateDict = dict[str, torch.Tensor]

# open_clip (and OpenAI) names → vlzoo names, for the parts that are renames only.
_OPEN_CLIP_RENAMES = [
    (r"^visual\.conv1\.", "visual.trunk.patch_embed.proj."),
    (r"^visual\.ln_pre\.", "visual.trunk.norm_pre."),
    (r"^visual\.ln_post\.", "visual.trunk.norm."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.ln_1\.", r"visual.trunk.blocks.\1.norm1."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.ln_2\.", r"visual.trunk.blocks.\1.norm2."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_", r"visual.trunk.blocks.\1.attn.qkv."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"visual.trunk.blocks.\1.attn.proj."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"visual.trunk.blocks.\1.mlp.fc1."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"visual.trunk.blocks.\1.mlp.fc2."),
    (r"^token_embedding\.", "{text}embeddings.token_embedding."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"{text}encoder.layers.\1.layer_norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"{text}encoder.layers.\1.layer_norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"{text}encoder.layers.\1.self_attn.out_proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"{text}encoder.layers.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"{text}encoder.layers.\1.mlp.fc2."),
    (r"^ln_final\.", "{text}final_layer_norm."),
    (r"^(logit_scale|logit_bias)$", r"\1"),
]

# Hugging Face CLIPModel names → vlzoo names.
_HF_CLIP_RENAMES = [
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual.trunk.patch_embed.proj."),
    (r"^vision_model\.pre_layrnorm\.", "visual.trunk.norm_pre."),
    (r"^vision_model\.post_layernorm\.", "visual.trunk.norm."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm1\.", r"visual.trunk.blocks.\1.norm1."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm2\.", r"visual.trunk.blocks.\1.norm2."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"visual.trunk.blocks.\1.attn.proj."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"visual.trunk.blocks.\1.mlp."),
    (r"^visual_projection\.", "visual.head."),
    (r"^text_projection\.", "text.head."),
    (r"^text_model\.", "{text}"),
    (r"^(logit_scale|logit_bias)$", r"\1"),
]


@lru_cache(maxsize=1)
def _text_prefix() -> str:
    """Where transformers keeps the CLIP text weights: `text_model.` inside `CLIPTextModel` before v5."""
    from transformers import CLIPTextConfig, CLIPTextModel

    probe = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=4,
            hidden_size=4,
            intermediate_size=4,
            num_attention_heads=1,
            num_hidden_layers=1,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        )
    )
    inner = "text_model." if any(k.startswith("text_model.") for k in probe.state_dict()) else ""
    return "text.transformer." + inner


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key).replace("{text}", _text_prefix())
    return None


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> StateDict:
    out = dict(state_dict)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def is_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "token_embedding.weight" in state_dict and any(k.startswith("visual.") for k in state_dict)


def is_hf_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("text_model.") for k in state_dict) and any(
        k.startswith("vision_model.") for k in state_dict
    )


def model_label(model: nn.Module | str | None, default: str = "CLIP") -> str:
    """How messages name the model being loaded: its registered name, else its class (or a given name)."""
    if model is None or isinstance(model, str):
        return model or default
    return getattr(model, "vlzoo_name", None) or type(model).__name__


def from_open_clip(state_dict: Mapping[str, torch.Tensor], model: nn.Module | None = None) -> StateDict:
    """open_clip / OpenAI CLIP weights → vlzoo `DualEncoder` keys.

    ViT image towers are renamed here; CLIP's modified ResNets go through timm's own converter for its
    `resnet*_clip` models, which needs the `model` being loaded (its `visual.trunk`).
    """
    model_name = model_label(model)
    sd = _strip_prefix(state_dict, ("module.", "_orig_mod."))
    if not is_open_clip_state_dict(sd):
        raise WeightsError(
            f"not an open_clip CLIP state dict (no token_embedding.weight / visual.*): {model_name}"
        )
    if "visual.conv1.weight" not in sd:
        raise WeightsError(
            f"open_clip weights for {model_name!r} have a timm image tower; vlzoo converts open_clip ViT and "
            "ResNet towers (a timm tower's weights load through timm)"
        )
    out: StateDict = {}
    if "visual.attnpool.positional_embedding" in sd:
        out.update(_open_clip_resnet_visual(sd, model))
        sd = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    text = _text_prefix()
    for key, value in sd.items():
        if key == "visual.class_embedding":
            out["visual.trunk.cls_token"] = value.reshape(1, 1, -1)
        elif key == "visual.positional_embedding":
            out["visual.trunk.pos_embed"] = value.unsqueeze(0)
        elif key == "visual.proj":
            out["visual.head.weight"] = value.t().contiguous()  # open_clip computes x @ proj
        elif key == "text_projection":
            out["text.head.weight"] = value.t().contiguous()
        elif key == "positional_embedding":
            out[text + "embeddings.position_embedding.weight"] = value
        elif m := re.match(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", key):
            q, k, v = value.chunk(3, dim=0)
            layer = f"{text}encoder.layers.{m[1]}.self_attn."
            out.update({f"{layer}{n}_proj.{m[2]}": t for n, t in zip("qkv", (q, k, v))})
        elif (new := _rename(key, _OPEN_CLIP_RENAMES)) is not None:
            out[new] = value
        elif key.startswith("attn_mask") or key.endswith("attn_mask"):
            continue  # the causal mask is a buffer, rebuilt by the text model
        else:
            raise WeightsError(f"open_clip key {key!r} has no counterpart in vlzoo's {model_name}")
    return out


def _open_clip_resnet_visual(sd: Mapping[str, torch.Tensor], model: nn.Module | str | None) -> StateDict:
    from timm.models.byobnet import checkpoint_filter_fn  # timm's model zoo: imported only for ResNets

    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if trunk is None:
        raise WeightsError(
            "converting open_clip ResNet weights needs the vlzoo model they load into (e.g. "
            f"create_model('clip-rn50')), got {model_label(model, 'none')}"
        )
    visual = {k: v for k, v in sd.items() if k.startswith("visual.")}
    return {f"visual.trunk.{k}": v for k, v in checkpoint_filter_fn(visual, trunk).items()}


def from_hf_clip(
    state_dict_or_dir: Mapping[str, torch.Tensor] | str | Path, model: nn.Module | None = None
) -> StateDict:
    """Hugging Face `CLIPModel` weights (a state dict, or a `save_pretrained` directory) → vlzoo keys."""
    model_name = model_label(model)
    if isinstance(state_dict_or_dir, str | Path):
        state_dict = load_state_dict(hf_weights_file(Path(state_dict_or_dir)))
    else:
        state_dict = state_dict_or_dir
    sd = _strip_prefix(state_dict, ("module.", "_orig_mod."))
    if not is_hf_clip_state_dict(sd):
        raise WeightsError(
            f"not a Hugging Face CLIPModel state dict (no text_model.* / vision_model.*): {model_name}"
        )
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue  # a buffer of 0..N-1, not a weight
        if key == "vision_model.embeddings.class_embedding":
            out["visual.trunk.cls_token"] = value.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["visual.trunk.pos_embed"] = value.unsqueeze(0)
        elif m := re.match(
            r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key
        ):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
        elif (new := _rename(key, _HF_CLIP_RENAMES)) is not None:
            out[new] = value
        else:
            raise WeightsError(f"Hugging Face CLIP key {key!r} has no counterpart in vlzoo's {model_name}")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(
                f"vision layer {layer} of the Hugging Face checkpoint lacks some of q/k/v_proj.{kind}"
            )
        out[f"visual.trunk.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0
        )
    return out


def hf_weights_file(directory: Path) -> Path:
    """The weights file of a `save_pretrained` directory: safetensors first, then a torch .bin."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise WeightsError(f"{directory} holds no model.safetensors or pytorch_model.bin")


def hf_clip_config_overrides(directory: Path) -> dict:
    """The vlzoo config changes a Hugging Face CLIP directory's `config.json` implies (its activations)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON: {err}") from err
    vision_act = config.get("vision_config", {}).get("hidden_act", "quick_gelu")
    text_act = config.get("text_config", {}).get("hidden_act", "quick_gelu")
    return {"vision": {"act_layer": vision_act if vision_act != "gelu" else None}, "text": {"act": text_act}}


def identity(state_dict: Mapping[str, torch.Tensor], model: nn.Module | None = None) -> StateDict:
    return _strip_prefix(state_dict, ("module.", "_orig_mod."))


CONVERTERS: dict[str, Callable[..., StateDict]] = {
    "vlzoo": identity,
    "open_clip": from_open_clip,
    "hf_clip": from_hf_clip,
}


def register_converter(name: str, fn: Callable[..., StateDict]) -> None:
    """Domain packages add converters for their official releases (e.g. a paper's own checkpoint layout):
    `fn(state_dict, model)`. A name another module registered is refused (`plugins.register_unique`)."""
    register_unique(CONVERTERS, name, fn, what="weights converter")


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name of the converter a state dict needs, recognized by marker keys."""
    sd = _strip_prefix(state_dict, ("module.", "_orig_mod."))
    if is_hf_clip_state_dict(sd):
        return "hf_clip"
    if is_open_clip_state_dict(sd):
        return "open_clip"
    return "vlzoo"


def convert(
    state_dict: Mapping[str, torch.Tensor], converter: str, model: nn.Module | None = None
) -> StateDict:
    """`state_dict` in vlzoo's layout for `model`, by the converter named `converter`."""
    if converter not in CONVERTERS:
        raise WeightsError(f"unknown weights converter {converter!r}; known: {sorted(CONVERTERS)}")
    return CONVERTERS[converter](state_dict, model)
