"""Checkpoints that survive a kill, and resuming from the newest one that loads.

Lightning writes a checkpoint through an fsspec transaction whose temporary file lives under `$TMPDIR`;
when that is another filesystem than the run folder (tmpfs, node-local /tmp beside NFS checkpoints) the
final move is a copy, and a kill during it leaves `last.ckpt` truncated with the good one already gone.
`AtomicCheckpointIO` writes into a hidden temporary file in the target folder itself, flushes it to disk
and `os.replace`s it: on POSIX the rename is atomic, so every `*.ckpt` on disk is whole.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from vlzoo.core.errors import VlzooError

TMP_PREFIX = ".vlzoo-tmp-"


class CheckpointError(VlzooError, RuntimeError):
    """A checkpoint to resume from is missing or does not load; the message names the file or folder."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic (temporary file in the same folder, fsync, rename).
    Remote paths (`s3://`, ...) keep Lightning's own writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO.save_checkpoint takes no storage_options, got {storage_options}"
            )
        atomic_torch_save(checkpoint, Path(path))


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """`torch.save(obj, path)` such that `path` is either its old content or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself reaches the disk
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every filesystem lets a folder be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_local(path: Any) -> bool:
    protocol = get_filesystem(str(path)).protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


def checkpoint_problem(path: str | Path) -> str | None:
    """Why `path` is not a loadable checkpoint, or None: it must be a whole torch zip archive (every member's
    CRC checked, nothing unpickled)."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"not a whole checkpoint archive ({err}); it was probably cut short by a kill"
    if bad is not None:
        return f"member {bad} is corrupt"
    if not any(name.endswith("data.pkl") for name in names):
        return "not a torch checkpoint (no data.pkl)"
    return None


def check_checkpoint(path: str | Path) -> Path:
    """`path`, or a `CheckpointError` naming it and what is wrong with it."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    return Path(path)


def newest_loadable_checkpoint(directory: str | Path) -> tuple[Path, list[tuple[Path, str]]]:
    """The most recently written `*.ckpt` under `directory` that loads, and the newer ones that don't
    (path, why). `last.ckpt` wins a tie with the step checkpoint written in the same step."""
    directory = Path(directory)
    found = sorted(
        directory.glob("*.ckpt"),
        key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")),
        reverse=True,
    )
    rejected: list[tuple[Path, str]] = []
    for path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, rejected
        rejected.append((path, problem))
    listing = "; ".join(f"{p.name}: {why}" for p, why in rejected) or "no *.ckpt files"
    raise CheckpointError(
        f"--ckpt_path last: no checkpoint under {directory} loads ({listing}). Start a fresh run without "
        "--ckpt_path, or point --trainer.default_root_dir at the run to resume"
    )


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the partial files a killed save left behind (they never carry the `.ckpt` suffix)."""
    stale = list(Path(directory).glob(f"{TMP_PREFIX}*.part"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
