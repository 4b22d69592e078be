"""Model registry: names → config factories and pretrained tags; `create_model` builds from them.

Models register with `@register_model("name", pretrained={...})` on a function returning a config
dataclass; the config's `build()` makes the module. Domain packages advertise the modules holding their
registrations under the entry-point group `vlzoo.models`; they are imported on the first lookup, so an
installed domain's models are listed without the user importing anything.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fnmatch
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlzoo.core.data.transforms import model_transform
from vlzoo.core.errors import ConfigError, UnknownModelError
from vlzoo.core.plugins import ENTRY_POINT_GROUP, discover_plugins, register_unique
from vlzoo.core.towers.structure import structure_only
from vlzoo.core.towers.text import build_tokenizer
from vlzoo.core.weights.checkpoint import PretrainedSource, load_weights, resolve_pretrained
from vlzoo.core.weights.spec import WeightSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "apply_overrides",
    "create_model",
    "discover_plugins",
    "get_model_config",
    "get_pretrained_spec",
    "get_tokenizer",
    "get_transforms",
    "list_models",
    "model_entry",
    "model_info",
    "register_model",
    "resolve_config",
    "split_model_name",
]


@dataclass
class ModelEntry:
    name: str
    config_fn: Callable[[], Any]
    pretrained: dict[str, WeightSpec] = field(default_factory=dict)
    default_tag: str | None = None
    module: str = ""

    @property
    def owner(self) -> str:  # what `plugins.register_unique` compares
        return self.module


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | Callable | None = None,
    *,
    pretrained: Mapping[str, WeightSpec] | None = None,
    default_tag: str | None = None,
):
    """Register a function returning a model config. Use as `@register_model`, `@register_model("name")`
    or `register_model("name", pretrained=...)(fn)`; without a name, the function's name with `_` → `-`.
    A name registered by another module is refused (`plugins.register_unique`).
    """

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        model_name = name if isinstance(name, str) else fn.__name__.replace("_", "-")
        tags = dict(pretrained or {})
        if default_tag is not None and default_tag not in tags:
            raise ConfigError(
                f"default_tag {default_tag!r} of {model_name!r} is not one of its tags {sorted(tags)}"
            )
        entry = ModelEntry(model_name, fn, tags, default_tag, fn.__module__)
        register_unique(_REGISTRY, model_name, entry, what="model")
        return fn

    if callable(name):
        return wrap(name)
    return wrap


def model_entry(name: str) -> ModelEntry:
    discover_plugins()
    entry = _REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `vlzoo list` shows all models"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return entry


def split_model_name(name: str) -> tuple[str, str | None]:
    """`"clip-vit-b-32:openai"` → `("clip-vit-b-32", "openai")`."""
    base, sep, tag = name.partition(":")
    return base, (tag if sep else None)


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Sorted registered names matching an fnmatch `pattern`; with `pretrained`, `name:tag` per weight tag."""
    discover_plugins()
    names = sorted(_REGISTRY)
    if pretrained:
        names = [f"{n}:{t}" for n in names for t in _REGISTRY[n].pretrained]
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_pretrained_spec(name: str, tag: str) -> WeightSpec:
    entry = model_entry(name)
    if tag not in entry.pretrained:
        available = ", ".join(sorted(entry.pretrained)) or "none"
        raise UnknownModelError(f"model {name!r} has no pretrained tag {tag!r}; available: {available}")
    return entry.pretrained[tag]


def get_model_config(name: str, **overrides: Any) -> Any:
    """A fresh config for `name` with `overrides` applied (validated); the registry's stays untouched."""
    base, _ = split_model_name(name)
    cfg = copy.deepcopy(model_entry(base).config_fn())
    return apply_overrides(cfg, overrides, where=base)


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], where: str = "config") -> Any:
    """Replace fields of a config dataclass; a dict for a nested dataclass field is applied recursively.

    A key that is not a field, or a value whose type doesn't fit the field's current value, is rejected
    with its dotted name.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        path = f"{where}.{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; fields are {', '.join(fields)}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = apply_overrides(current, value, where=path)
        else:
            value = _coerce_declared(cfg, key, value, current, path)
        changes[key] = value
    return dataclasses.replace(cfg, **changes)


def _coerce_declared(cfg: Any, key: str, value: Any, current: Any, path: str) -> Any:
    """`_coerce` against the field's current value; a field declared as a union (`image_size: int |
    tuple[int, int]`) also takes a value of its other members (a list becomes a tuple)."""
    try:
        return _coerce(value, current, path)
    except ConfigError as err:
        mismatch = err
    try:
        hint = typing.get_type_hints(type(cfg)).get(key)
    except (NameError, TypeError):  # an annotation that does not resolve: only the current type counts
        raise mismatch from None
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        raise mismatch
    for member in typing.get_args(hint):
        base = typing.get_origin(member) or member
        if base is tuple and isinstance(value, list | tuple):
            return tuple(value)
        if isinstance(base, type) and isinstance(value, base) and not isinstance(value, bool):
            return value
    raise mismatch


def _coerce(value: Any, current: Any, path: str) -> Any:
    """Check `value` against the type of the field's current value; lists from JSON become tuples."""
    if current is None or value is None:
        return value
    if isinstance(current, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, int | float):
        ok = isinstance(value, int | float)
        if ok and isinstance(current, int) and isinstance(value, float) and not value.is_integer():
            ok = False
        if ok:
            value = type(current)(value)
    elif dataclasses.is_dataclass(current):
        ok = type(value) is type(current)
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ConfigError(
            f"config key {path!r} expects {type(current).__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


def resolve_config(
    name: str, pretrained: str | Path | None = None, **overrides: Any
) -> tuple[Any, PretrainedSource | None]:
    """The config `create_model(name, pretrained, **overrides)` builds, and where its weights come from.

    Layered as the weights need: the registered defaults, then the config saved with the weights, then what
    the weights require (a conflicting override is an error), then `overrides`. A model that loads another
    registered model's weights into itself (RadCLIP3D's 2D towers) resolves them here too.
    """
    base, tag = split_model_name(name)
    if tag is not None and pretrained is not None:
        raise ConfigError(f"pretrained given twice: as {name!r} and as pretrained={pretrained!r}")
    if tag is not None:
        get_pretrained_spec(base, tag)  # a NAME:TAG must name a tag, never a path
    entry = model_entry(base)  # an unknown name fails here, before any download
    source = resolve_pretrained(base, tag if tag is not None else pretrained, entry.pretrained)
    cfg = get_model_config(base)
    if source is not None:
        cfg = apply_overrides(cfg, source.saved_config, where=base)
        _check_required(source.config_overrides, overrides, f"{base!r} weights {source.label}")
        cfg = apply_overrides(cfg, source.config_overrides, where=base)
    return apply_overrides(cfg, overrides, where=base), source


def create_model(
    name: str,
    pretrained: str | Path | None = None,
    *,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    `pretrained` is a tag of the model (`vlzoo list --pretrained`), a local file (vlzoo, open_clip or
    Hugging Face CLIP format, detected), a directory saved by `CLIPModel.save_pretrained`, or
    `hf-hub:org/repo[/file]`. `name` may also carry the tag: `"clip-vit-b-32:openai"`.
    Loading is strict: missing or unexpected keys are an error unless `strict=False` is given.
    """
    cfg, source = resolve_config(name, pretrained, **overrides)
    model = cfg.build()
    model.vlzoo_name = split_model_name(name)[0]
    if source is not None:
        load_weights(model, source, strict=strict)
        model.vlzoo_pretrained = source.label
    return model


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_required(required: Mapping[str, Any], overrides: Mapping[str, Any], what: str) -> None:
    """Overrides may not contradict what a set of weights needs (e.g. QuickGELU for OpenAI's weights)."""
    need, asked = _flatten(required), _flatten(overrides)
    for key in sorted(need.keys() & asked.keys()):
        if need[key] != asked[key]:
            raise ConfigError(f"{what} need {key}={need[key]!r}, not {asked[key]!r}")


def preprocessing_config(
    model: str | nn.Module, pretrained: str | Path | None = None, **overrides: Any
) -> Any:
    """The config that a model's preprocessing and tokenizer come from, the same one its weights were built
    with: a built model's own `config` (as `create_model` resolved it, with the config saved beside its
    weights), else `resolve_config(name, pretrained, **overrides)`. The one function behind `get_transforms`
    and `get_tokenizer`: a model fine-tuned with another image size, normalization or context length is fed
    as it was trained, never with the registered defaults."""
    if isinstance(model, nn.Module):
        if pretrained is not None or overrides:
            raise ConfigError(
                "preprocessing of a built model comes from its own config: give pretrained= or overrides to "
                "create_model, not here"
            )
        cfg = getattr(model, "config", None)
        if cfg is None:
            raise ConfigError(f"{type(model).__name__} has no `config`: it is not a vlzoo model")
        return cfg
    return resolve_config(model, pretrained, **overrides)[0]


def _label(model: str | nn.Module) -> str:
    return model if isinstance(model, str) else getattr(model, "vlzoo_name", type(model).__name__)


def get_tokenizer(model: str | nn.Module, pretrained: str | Path | None = None, **overrides: Any):
    """The tokenizer of a model (a registered name, with the `pretrained` weights it will load and its
    `overrides`, or a built model): its config's own `tokenizer()` if it has one (a vocabulary built in memory,
    as a tiny model with no hub files needs), else the one its text tower was configured with."""
    cfg = preprocessing_config(model, pretrained, **overrides)
    own = getattr(cfg, "tokenizer", None)
    if callable(own):
        return own()
    if getattr(cfg, "text", None) is None:
        raise ConfigError(f"model {_label(model)!r} has no text tower, so no tokenizer")
    return build_tokenizer(cfg.text)


def get_transforms(
    model: str | nn.Module,
    train: bool,
    albumentations: Any | None = None,
    pretrained: str | Path | None = None,
    **overrides: Any,
):
    """The preprocessing of a model (as for `get_tokenizer`): its config's own `transform()` if it has one,
    else resize, crop, tensor and normalize from its vision config (with `albumentations` augmentations
    before, when given)."""
    cfg = preprocessing_config(model, pretrained, **overrides)
    return model_transform(cfg, train=train, albumentations=albumentations)


def model_info(name: str) -> dict[str, Any]:
    """Config (as a dict), parameter count and pretrained tags of a model; builds it once on the meta device
    from its configs alone (`structure_only`): no weights are downloaded or loaded, whatever the config asks."""
    base, _ = split_model_name(name)
    entry = model_entry(base)
    cfg = get_model_config(base)
    with structure_only(), torch.device("meta"):
        model = cfg.build()
    return {
        "name": base,
        "module": entry.module,
        "config_class": type(cfg).__name__,
        "config": dataclasses.asdict(cfg),
        "num_params": sum(p.numel() for p in model.parameters()),
        "pretrained": sorted(entry.pretrained),
        "default_pretrained": entry.default_tag,
    }
