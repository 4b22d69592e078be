"""Loading weights into a vlzoo model from any source, and saving them back as safetensors + JSON config."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlzoo.core.errors import WeightsError
from vlzoo.core.weights.convert import convert, detect_format, hf_clip_config_overrides, hf_weights_file
from vlzoo.core.weights.hub import download
from vlzoo.core.weights.io import load_state_dict, read_metadata, save_state_dict
from vlzoo.core.weights.spec import WeightSpec

_log = logging.getLogger(__name__)
CONFIG_FORMAT_VERSION = 1
HF_HUB_PREFIX = "hf-hub:"
OPEN_CLIP_HF_FILE = "open_clip_model.safetensors"
# vlzoo's LightningModule (`train.ZooModule`) holds the zoo model as `self.model`: every weight of a
# `last.ckpt` is named `model.<key>`.
TRAINING_MODULE_PREFIX = "model."


@dataclass
class PretrainedSource:
    """Where a model's weights come from: a registered tag (downloaded), a local file or an HF directory."""

    label: str
    spec: WeightSpec | None = None
    path: Path | None = None
    converter: str | None = None  # None: recognized from the state dict's keys
    config_overrides: dict[str, Any] = field(
        default_factory=dict
    )  # what the weights need; a conflict is an error
    saved_config: dict[str, Any] = field(
        default_factory=dict
    )  # the config saved with them; overrides may change it

    def file(self) -> Path:
        return self.path if self.path is not None else download(self.spec)


def config_path(weights_path: Path) -> Path:
    """The JSON config saved beside a weights file: `model.safetensors` → `model.json`."""
    return weights_path.with_suffix(".json")


def resolve_pretrained(
    model_name: str, pretrained: str | Path | None, tags: Mapping[str, WeightSpec] | None = None
) -> PretrainedSource | None:
    """Turn `create_model`'s `pretrained=` into a source. `tags` are the model's registered weights (the
    registry passes its entry's); a tag wins over a same-named relative path."""
    if pretrained is None:
        return None
    tags = tags or {}
    text = str(pretrained)
    if text in tags:
        spec = tags[text]
        return PretrainedSource(
            f"{model_name}:{text}",
            spec=spec,
            converter=spec.converter,
            config_overrides=dict(spec.config_overrides),
        )
    if text.startswith(HF_HUB_PREFIX):
        # "hf-hub:org/repo" means open_clip's file in that repo; "hf-hub:org/repo/file" names the file.
        name = text if text.count("/") >= 2 else f"{text}/{OPEN_CLIP_HF_FILE}"
        try:
            return PretrainedSource(text, spec=WeightSpec.from_hf_hub(name))
        except ValueError as err:
            raise WeightsError(str(err)) from err
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() and not config_path(path / "model.safetensors").is_file():
            return PretrainedSource(
                str(path),
                path=hf_weights_file(path),
                converter="hf_clip",
                config_overrides=hf_clip_config_overrides(path),
            )
        path = path / "model.safetensors"
    if path.is_file():
        saved = _saved_config(path, model_name) or _training_config(path, model_name, tags)
        return PretrainedSource(str(path), path=path, saved_config=saved)
    known = ", ".join(sorted(tags)) or "none"
    raise WeightsError(
        f"pretrained={text!r} for {model_name!r} is neither one of its tags ({known}), an existing file or "
        f"directory, nor an {HF_HUB_PREFIX}org/repo name"
    )


def _saved_config(weights_path: Path, model_name: str) -> dict[str, Any]:
    """Config saved with vlzoo weights; building from it keeps activations and preprocessing as trained."""
    sidecar = config_path(weights_path)
    if not sidecar.is_file():
        return {}
    try:
        saved = json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{sidecar} is not valid JSON: {err}") from err
    if saved.get("model") != model_name:
        raise WeightsError(
            f"{weights_path} holds weights of {saved.get('model')!r} (see {sidecar.name}), not of {model_name!r}"
        )
    return saved.get("config", {})


def _training_config(
    path: Path, model_name: str, tags: Mapping[str, WeightSpec], visited: frozenset[Path] = frozenset()
) -> dict[str, Any]:
    """The config a vlzoo training checkpoint (Lightning's `.ckpt` of `ZooModule`) was trained with: the
    config of the weights the run started from, then its `model_overrides`, read from the hyper-parameters
    Lightning saved beside the weights (`weights_only`, memory-mapped: nothing is unpickled or read twice).
    Another model's checkpoint is refused by name; a file that is no training checkpoint gives `{}`."""
    if path.suffix == ".safetensors":
        return {}
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # not a zip torch file, or unreadable: load_weights names the problem
        return {}
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    if not isinstance(hparams, Mapping) or not isinstance(hparams.get("model"), str):
        return {}
    if hparams["model"] != model_name:
        raise WeightsError(f"{path} is a training checkpoint of {hparams['model']!r}, not of {model_name!r}")
    start = _start_config(hparams.get("pretrained"), model_name, tags, visited | {path.resolve()})
    return _merged(start, hparams.get("model_overrides") or {})


def _start_config(
    start: Any, model_name: str, tags: Mapping[str, WeightSpec], visited: frozenset[Path]
) -> dict[str, Any]:
    """What the weights a run started from required of the config: a tag's `config_overrides`, or the
    config saved with a vlzoo file (a checkpoint that started from a checkpoint is followed back)."""
    if start is None:
        return {}
    if str(start) in tags:
        return dict(tags[str(start)].config_overrides)
    path = Path(str(start)).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        _log.warning("the run started from %s, which is not here: its config is taken as registered", start)
        return {}
    if path.resolve() in visited:  # a run resumed into the file it started from
        return {}
    return _saved_config(path, model_name) or _training_config(path, model_name, tags, visited)


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `changes`, nested dicts merged key by key (a sub-config changed in one field)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = _merged(out[key], value)
        out[key] = value
    return out


def _unwrap_training_module(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The zoo model's own weights out of a training checkpoint, whose keys all carry `model.`; what the
    LightningModule holds besides the model (a loss's buffers) is not the model's. Weights already named as
    the model names them are returned as they are."""
    own = model.state_dict().keys()
    if not state_dict.keys().isdisjoint(own) or not any(
        k.startswith(TRAINING_MODULE_PREFIX) for k in state_dict
    ):
        return state_dict
    n = len(TRAINING_MODULE_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(TRAINING_MODULE_PREFIX)}


def load_weights(
    model: nn.Module, source: PretrainedSource | str | Path, strict: bool = True
) -> dict[str, list]:
    """Load weights into `model`, converting foreign layouts; return the missing and unexpected keys.

    Shapes must match key by key (a different architecture is an error whatever `strict` says); missing or
    unexpected keys are an error unless `strict=False`, then they are logged and returned.
    """
    if not isinstance(source, PretrainedSource):
        source = PretrainedSource(str(source), path=Path(source))
    path = source.file()
    state_dict = _unwrap_training_module(load_state_dict(path), model)
    state_dict = convert(state_dict, source.converter or detect_format(state_dict), model)
    _resize_pos_embed(state_dict, model)
    return load_checked(model, state_dict, strict=strict, where=str(path))


def load_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True, where: str = "state dict"
) -> dict[str, list]:
    """`model.load_state_dict` with one error that lists every missing, unexpected and mis-shaped key.

    A model may name training-only state that released weights never hold (an EMA teacher, a
    self-distillation head) by key prefix in `optional_state_prefixes`; those keys may be missing, and the
    model initializes them itself (e.g. in a `load_state_dict` post-hook).
    """
    own = model.state_dict()
    optional = tuple(getattr(model, "optional_state_prefixes", ()))
    missing = sorted(k for k in set(own) - set(state_dict) if not k.startswith(optional))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch (a different architecture?):\n  " + "\n  ".join(mismatched))
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if problems:
        hint = "" if mismatched or not strict else "\n(pass strict=False to load the keys that match)"
        raise WeightsError(
            f"cannot load {where} into {getattr(model, 'vlzoo_name', type(model).__name__)}:\n"
            + "\n".join(problems)
            + hint
        )
    model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        _log.warning("loaded %s with %d missing and %d unexpected keys", where, len(missing), len(unexpected))
    return {"missing": missing, "unexpected": unexpected}


def _resize_pos_embed(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Resample a ViT's position embedding grid when the model runs at another image size."""
    key = "visual.trunk.pos_embed"
    own = model.state_dict().get(key)
    if own is None or key not in state_dict or state_dict[key].shape == own.shape:
        return
    from timm.layers import resample_abs_pos_embed

    trunk = model.visual.trunk
    prefix = 0 if getattr(trunk, "no_embed_class", False) else trunk.num_prefix_tokens
    state_dict[key] = resample_abs_pos_embed(
        state_dict[key], new_size=trunk.patch_embed.grid_size, num_prefix_tokens=prefix, verbose=True
    )


def save(model: nn.Module, path: str | Path, name: str | None = None) -> Path:
    """Write `model`'s weights as safetensors and its config as JSON beside them; returns the weights path.

    `create_model(name, pretrained=path)` rebuilds the same architecture from the JSON and loads them.
    """
    name = name or getattr(model, "vlzoo_name", None)
    config = getattr(model, "config", None)
    if name is None or config is None or not dataclasses.is_dataclass(config):
        raise WeightsError(
            "save() needs a model made by create_model (or pass name=) with a dataclass .config"
        )
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": name, "format_version": CONFIG_FORMAT_VERSION, "config": dataclasses.asdict(config)}
    save_state_dict(model.state_dict(), path, metadata={"vlzoo_model": name})
    config_path(path).write_text(json.dumps(payload, indent=2) + "\n")
    return path


__all__ = [
    "PretrainedSource",
    "config_path",
    "load_checked",
    "load_weights",
    "read_metadata",
    "resolve_pretrained",
    "save",
]
