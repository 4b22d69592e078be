"""Safe reading and writing of state dicts.

Reading: safetensors when the file is one (by suffix, or by its header whatever the suffix), otherwise
``torch.load(..., weights_only=True)`` and nothing looser: a checkpoint that needs arbitrary unpickling
is refused, never retried unsafely. Training containers (Lightning, DDP, torch.compile) are unwrapped
so that callers always get a flat ``{name: tensor}`` dict.

Writing: always safetensors, atomically (temp file in the target directory, then ``os.replace``).
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vlzoo.core.errors import WeightsError

__all__ = ["load_state_dict", "read_metadata", "save_state_dict"]

# Keys under which training loops nest the model weights, in the order they are looked for.
_CONTAINER_KEYS = ("state_dict", "model", "module")
# Prefixes that wrappers add to every key: DistributedDataParallel, then torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
# A safetensors header this large would be absurd; the cap keeps a random file from looking like one.
_MAX_HEADER = 100 << 20


def _check_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} is not a file")
    return path


def _looks_like_safetensors(path: Path) -> bool:
    """Sniff the header: an 8-byte little-endian length, then that many bytes of JSON starting with '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(_MAX_HEADER, path.stat().st_size - 8) and head[8:9] == b"{"


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors" or _looks_like_safetensors(path)


def _device_str(map_location: Any) -> str:
    if isinstance(map_location, torch.device):
        return str(map_location)
    if isinstance(map_location, str):
        return map_location
    # torch.load accepts callables and remapping dicts; safetensors does not, so load on the CPU.
    return "cpu"


def _load_safetensors(path: Path, map_location: Any) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=_device_str(map_location))
    except Exception as e:  # SafetensorError has no stable import path across safetensors versions
        raise WeightsError(f"cannot read safetensors file {path}: {e} (truncated or corrupt?)") from e


def _load_torch(path: Path, map_location: Any) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ZIP_MAGIC and (not head or head[0] != _PICKLE_PROTO):
        raise WeightsError(f"{path} is neither a safetensors file nor a torch checkpoint (zip or pickle)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():
            # weights_only met a class or function reference: loading it would run foreign code.
            raise WeightsError(
                f"{path} contains non-tensor pickled objects (classes or callables), which will not be "
                "unpickled: loading them could execute arbitrary code. Re-save the checkpoint as a plain "
                f"tensor state dict or as safetensors. (torch: {_first_line(e)})"
            ) from None
        raise WeightsError(f"{path} is not a readable torch checkpoint: {_first_line(e)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable torch checkpoint (truncated or corrupt?): {e}") from e


def _first_line(error: BaseException) -> str:
    """torch's weights_only messages run to a screenful; the telling line is the one naming the global."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "global" in line.lower():
            return line
    return lines[0] if lines else type(error).__name__


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the weights inside a training checkpoint and return them as a flat tensor dict."""
    for _ in range(4):  # e.g. {"state_dict": {"model": {...}}}; bounded so odd files cannot loop
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    # Epoch counters, hyper-parameters, optimizer states: not weights.
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors (keys: {list(obj)[:10]})")
    return _strip_prefixes(tensors)


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def load_state_dict(path: str | Path, *, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """Load a flat ``{name: tensor}`` state dict from a safetensors or torch checkpoint, safely.

    Args:
        path: ``.safetensors`` (or any file with a safetensors header), or ``.pt/.pth/.bin/.ckpt``.
        map_location: device for the tensors, as for ``torch.load``.

    Raises:
        WeightsError: missing, truncated or corrupt file, a file that is no checkpoint, or one that
            needs unsafe unpickling; the message names the file.
    """
    path = _check_file(path)
    if _is_safetensors(path):
        if not _looks_like_safetensors(path):
            raise WeightsError(f"{path} has no valid safetensors header (truncated or not safetensors?)")
        obj: Any = _load_safetensors(path, map_location)
    else:
        obj = _load_torch(path, map_location)
    return _unwrap(obj, path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header; ``{}`` for torch checkpoints."""
    path = _check_file(path)
    if not _is_safetensors(path):
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise WeightsError(f"cannot read safetensors header of {path}: {e}") from e


def _prepare(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, none sharing memory with another (safetensors refuses that)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state dict keys must be str, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().to("cpu").contiguous()
        # Tied weights (and views into one buffer) share a storage: give each name its own copy, so the
        # file loads back with every key present whatever the model's tying.
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:
            t = t.clone()
        elif t.numel():
            seen.add(key)
        out[name] = t
    return out


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state_dict`` as safetensors at ``path`` atomically; returns the path.

    Shared (tied) tensors are written once per name; ``metadata`` values must be strings and
    ``{"format": "pt"}`` is added unless given (transformers expects it).
    """
    path = Path(path).expanduser()
    meta = {"format": "pt", **(metadata or {})}
    bad = {k: type(v).__name__ for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; not so for {bad} (use json.dumps)")
    tensors = _prepare(state_dict)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so the rename is atomic; not mkstemp, whose 0600 mode would stick to the result.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
