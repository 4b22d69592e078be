"""What every vlzoo registry shares: entry-point discovery of domain packages and one rule for duplicates.

The lowest layer of the core besides `errors`: the model registry, the data kinds and the weight
converters all call into it, and it imports none of them, so none of them has to reach back into another
to find plugins.

Duplicates: a name belongs to the module that registered it first. The same module registering it again
(a reload, a re-run notebook cell) replaces its own entry; another module is refused with a `ConfigError`
naming both, because silently letting the last import win makes a model or a file format depend on
import order.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import MutableMapping
from importlib import import_module, metadata
from typing import Any, TypeVar

from vlzoo.core.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "discover_plugins", "owner_of", "register_unique"]

ENTRY_POINT_GROUP = "vlzoo.models"
# The core's own model file registers like a domain's, by being imported on the first lookup.
BUILTIN_MODULES = ("vlzoo.core.models.clip",)

_discovered = False
_lock = threading.RLock()

V = TypeVar("V")


def discover_plugins(force: bool = False) -> None:
    """Import core's model modules and every module advertised under the `vlzoo.models` entry points.

    A domain's entry-point module registers its models, data kinds, decoders and converters on import, so
    any registry lookup calls this first. A package that fails to import is reported, not raised: one
    broken domain must not hide the others.
    """
    global _discovered
    with _lock:
        if _discovered and not force:
            return
        _discovered = True
        for module in BUILTIN_MODULES:
            import_module(module)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                if callable(loaded):  # an entry point may name a function that registers models
                    loaded()
            except Exception as err:
                warnings.warn(
                    f"vlzoo: models of {ep.value!r} ({ep.name}) could not be loaded: {err!r}", stacklevel=2
                )


def owner_of(value: Any) -> str:
    """The module a registered value belongs to: its `owner` field if it is a record that keeps one, else
    the `__module__` of the function or class (a `functools.partial` counts as its function's)."""
    owner = getattr(value, "owner", None)
    if isinstance(owner, str) and owner:
        return owner
    value = getattr(value, "func", value)
    return getattr(value, "__module__", None) or type(value).__module__


def register_unique(
    table: MutableMapping[str, V], name: str, value: V, *, what: str, owner: str | None = None
) -> V:
    """`table[name] = value`, unless another module already owns `name` there: then a `ConfigError`
    naming the `what` ("model", "data kind", ...) and both owners. `owner` defaults to `owner_of(value)`."""
    owner = owner or owner_of(value)
    with _lock:
        previous = table.get(name)
        if previous is not None and owner_of(previous) != owner:
            raise ConfigError(
                f"{what} {name!r} is registered twice: by {owner_of(previous)} and by {owner}; "
                f"give one of them another name"
            )
        table[name] = value
    return value
