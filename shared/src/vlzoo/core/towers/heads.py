"""Projection heads from a tower's width to the joint embedding space."""

from __future__ import annotations

from torch import nn

from vlzoo.core.errors import ConfigError


def _mlp(in_dim: int, out_dim: int) -> nn.Module:
    # Two layers with a GELU, hidden = mean of the two widths: the head open_clip's HF text towers use.
    hidden = (in_dim + out_dim) // 2
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, out_dim, bias=False)
    )


_HEADS = {
    "linear": lambda i, o: nn.Linear(i, o, bias=False),
    "mlp": _mlp,
    "none": lambda i, o: nn.Identity(),
}


def build_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    try:
        return _HEADS[kind](in_dim, out_dim)
    except KeyError:
        raise ConfigError(f"unknown projection head {kind!r}; choose one of {sorted(_HEADS)}") from None
