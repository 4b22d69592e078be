"""The zoo model contract: what every registered model provides, and its optional capabilities, each with
one name. `tests/core/test_model_contract.py` checks every registered model against it.

Every model:
- keeps the config dataclass it was built from as `model.config`; `config.build()` makes the model, and a
  config class may name the generated dataset its tiny models train on (`toy_data: ClassVar[str]`);
- `forward(batch) -> dict` with a finite scalar `"loss"` for a training batch, plus any other terms;
- round-trips: `vlzoo.core.weights.save(model, path)` then `create_model(name, pretrained=path)`.

Capabilities (a model has one when it has every method listed for it in `CAPABILITIES`): image and text
encoding, `retrieval_features(batch)`, a replaceable loss (`set_loss(loss_module)`, what a recipe's `loss:`
calls), lockable towers, gradient checkpointing, the step hook `on_train_step_end(step, total_steps)`, and the
evaluation faces `encode_volume`, `itm_scores`, `concept_similarity_map`. Two attributes are read when present:
`optional_state_prefixes` (keys a checkpoint may lack) and `no_weight_decay()` (parameter names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from vlzoo.core.errors import ConfigError

__all__ = [
    "CAPABILITIES",
    "DEFAULT_TOY_DATA",
    "ZooModel",
    "capabilities",
    "check_forward_output",
    "check_model",
    "has_capability",
    "require_capability",
    "toy_data",
]

DEFAULT_TOY_DATA = "toyworld"

# capability -> the methods a model must have for it
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "image_encoder": ("encode_image",),
    "text_encoder": ("encode_text",),
    "retrieval": ("retrieval_features",),
    "replaceable_loss": ("set_loss",),
    "lockable_image_tower": ("lock_image_tower",),
    "lockable_text_tower": ("lock_text_tower",),
    "grad_checkpointing": ("set_grad_checkpointing",),
    "step_hook": ("on_train_step_end",),
    "volume_encoder": ("encode_volume",),
    "itm": ("itm_scores",),
    "concepts": ("concept_similarity_map",),
}


@runtime_checkable
class ZooModel(Protocol):
    """The required faces, for type hints; `check_model` checks what a Protocol cannot (the config's
    `build`, the names of `no_weight_decay`, the output of `forward`)."""

    config: Any

    def forward(self, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]: ...


def has_capability(model: nn.Module, capability: str) -> bool:
    if capability not in CAPABILITIES:
        raise ConfigError(f"unknown capability {capability!r}; the capabilities are {sorted(CAPABILITIES)}")
    return all(callable(getattr(model, m, None)) for m in CAPABILITIES[capability])


def capabilities(model: nn.Module) -> list[str]:
    """The names of the capabilities `model` has, in `CAPABILITIES` order."""
    return [c for c in CAPABILITIES if has_capability(model, c)]


def require_capability(model: nn.Module, capability: str, *, key: str, model_name: str | None = None) -> None:
    """Raise `ConfigError` naming `key` (what asked for it) and the model when it lacks `capability`."""
    if has_capability(model, capability):
        return
    name = model_name or getattr(model, "vlzoo_name", None) or type(model).__name__
    missing = [m for m in CAPABILITIES[capability] if not callable(getattr(model, m, None))]
    raise ConfigError(
        f"{key}: model {name!r} ({type(model).__name__}) cannot do this: it has no {', '.join(missing)}() "
        f"(capability {capability!r})"
    )


def toy_data(config: Any) -> str:
    """The generated dataset a model of `config` trains on in tests and demos (`toyworld` unless declared)."""
    return getattr(type(config), "toy_data", DEFAULT_TOY_DATA)


# ------------------------------------------------------------------------------------------- checks


def check_model(model: nn.Module, batch: Mapping[str, Any] | None = None) -> list[str]:
    """The contract's problems with `model`, each naming the missing or wrong face; empty when it complies.

    Without `batch` only what needs no computation is checked (a model on the meta device qualifies); with
    a training `batch`, `forward(batch)` runs too and its output is checked.
    """
    problems = _check_config(model) + _check_forward_defined(model) + _check_no_weight_decay(model)
    prefixes = getattr(model, "optional_state_prefixes", ())
    if not isinstance(prefixes, (tuple, list)) or not all(isinstance(p, str) for p in prefixes):
        problems.append(f"optional_state_prefixes must be a tuple of key prefixes, got {prefixes!r}")
    if batch is not None and not problems:
        problems += check_forward_output(model(batch))
    return problems


def check_forward_output(out: Any) -> list[str]:
    """Problems with what `forward(batch)` returned: a mapping holding a finite scalar tensor `"loss"`."""
    if not isinstance(out, Mapping):
        return [f"forward(batch) must return a dict with a 'loss', got {type(out).__name__}"]
    if "loss" not in out:
        return [f"forward(batch) returned no 'loss' (keys: {sorted(out)})"]
    loss = out["loss"]
    if not torch.is_tensor(loss) or loss.ndim != 0:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        return [f"forward(batch)['loss'] must be a scalar tensor, got {shape}"]
    if not loss.is_meta and not bool(torch.isfinite(loss.detach())):
        return [f"forward(batch)['loss'] is not finite: {loss.item()}"]
    return []


def _check_config(model: nn.Module) -> list[str]:
    config = getattr(model, "config", None)
    if config is None:
        return [f"{type(model).__name__} has no 'config' attribute (the config dataclass it was built from)"]
    if not callable(getattr(config, "build", None)):
        return [f"{type(model).__name__}.config ({type(config).__name__}) has no build() method"]
    return []


def _check_forward_defined(model: nn.Module) -> list[str]:
    # nn.Module's own forward raises NotImplementedError: a model that never overrode it has no forward.
    if type(model).forward is nn.Module.forward:
        return [f"{type(model).__name__} does not define forward(batch)"]
    return []


def _check_no_weight_decay(model: nn.Module) -> list[str]:
    """Names in `no_weight_decay()` must be parameters (or optional ones left None), else the exemption is
    silently lost: the optimizer's grouping matches them by exact name."""
    fn = getattr(model, "no_weight_decay", None)
    if not callable(fn):
        return []
    params = dict(model.named_parameters())
    unknown = [n for n in sorted(fn()) if n not in params and not _is_none_attribute(model, n)]
    if unknown:
        return [f"no_weight_decay() names {unknown}, which are not parameters of {type(model).__name__}"]
    return []


def _is_none_attribute(model: nn.Module, dotted: str) -> bool:
    owner: Any = model
    *path, last = dotted.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return owner is not None and hasattr(owner, last) and getattr(owner, last) is None
