"""Structure-only builds: a model made from its configs alone, with no weights loaded and nothing downloaded.

`vlzoo info` and the registry-wide contract test count and check the parameters of full-size models on the
meta device. Towers that would fetch pretrained weights while they are built (timm `pretrained=True`,
transformers `from_pretrained`, a prior network's checkpoint) build the same architecture at random instead
while `structure_only()` is active: the shapes come from configs, never from weight files.

>>> with structure_only(), torch.device("meta"):
...     model = get_model_config("ptunifier-base").build()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["is_structure_only", "loads_pretrained", "structure_only"]

# A context variable, not a module flag: a build in another thread is not switched by this one's `with`.
_STRUCTURE_ONLY: ContextVar[bool] = ContextVar("vlzoo_structure_only", default=False)


@contextmanager
def structure_only() -> Iterator[None]:
    """Within the block, models build from their configs only: no pretrained weights are loaded or fetched."""
    token = _STRUCTURE_ONLY.set(True)
    try:
        yield
    finally:
        _STRUCTURE_ONLY.reset(token)


def is_structure_only() -> bool:
    """True inside `structure_only()`: build the architecture, read no weight, tokenizer or vocabulary file."""
    return _STRUCTURE_ONLY.get()


def loads_pretrained(asked: bool) -> bool:
    """Whether a part whose config asks for pretrained weights (`asked`) loads them: never in `structure_only()`."""
    return bool(asked) and not is_structure_only()
