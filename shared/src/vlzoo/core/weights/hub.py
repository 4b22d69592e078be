"""Pretrained-weights hub: where weight files come from and where they are cached.

A :class:`WeightSpec` names one weight file, either at a plain http(s) URL (pinned by its sha256) or in
a Hugging Face hub repository. :func:`download` returns a local path to it, downloading only when needed.

Cache layout for URL weights (``weights`` is ``cache_dir() / "weights"``, i.e. ``$VLZOO_HOME/weights`` or
``~/.cache/vlzoo/weights``, unless ``download(cache_dir=...)`` names another directory)::

    weights/<sha256[:16]>/<filename>            the verified file
    weights/<sha256[:16]>/<filename>.verified   JSON sidecar: digest, size and mtime seen when verified
    weights/<sha256[:16]>/<filename>.part       a download in progress (resumed by the next attempt)
    weights/<sha256[:16]>/<filename>.lock       inter-process lock held while downloading

The directory is keyed by the digest, so two different files that share a name never collide and a spec
always maps to the same path. Hugging Face weights stay in huggingface_hub's own cache (shared with
transformers/open_clip, with its auth); only their verification sidecars live under
``weights/hf-verified``.

Offline mode (``VLZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on) never opens a connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, TextIO

from filelock import FileLock

from vlzoo.core.errors import ChecksumError, ConfigError, DownloadError
from vlzoo.core.weights.spec import WeightSpec  # re-exported: its home before it had a module of its own

__all__ = ["WeightSpec", "cache_dir", "cache_path", "download", "is_offline"]

OFFLINE_ENV_VARS = ("VLZOO_OFFLINE", "HF_HUB_OFFLINE")

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_CHUNK = 1 << 20
_HASH_CHUNK = 8 << 20
# Statuses worth another try: the server or a proxy in between is busy, not the request wrong.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Module-level so tests can make the backoff instant.
_BACKOFF_BASE_S = 1.0
_BACKOFF_MAX_S = 30.0


# --------------------------------------------------------------------------------------- env / paths


def cache_dir() -> Path:
    """The vlzoo cache root: ``$VLZOO_HOME``, else ``~/.cache/vlzoo``. Weights live in its ``weights/``."""
    home = os.environ.get("VLZOO_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "vlzoo"


def _offline_var() -> str | None:
    """The name of the first environment variable that turns offline mode on, if any."""
    for name in OFFLINE_ENV_VARS:
        if os.environ.get(name, "").strip().lower() in _TRUTHY:
            return name
    return None


def is_offline() -> bool:
    """True when ``VLZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is 1/true/yes/on (read at every call)."""
    return _offline_var() is not None


def cache_path(spec: WeightSpec, *, cache_dir: Path | None = None) -> Path:
    """Where :func:`download` keeps a URL spec's file (whether or not it is there yet)."""
    if spec.url is None or spec.sha256 is None:
        raise ConfigError(f"{spec.source} is not a URL spec; its file lives in the Hugging Face cache")
    return _weights_dir(cache_dir) / spec.sha256[:16] / spec.filename


def _weights_dir(override: Path | str | None) -> Path:
    # A module-level helper because download()'s ``cache_dir`` argument shadows the function.
    return Path(override).expanduser() if override is not None else cache_dir() / "weights"


# ---------------------------------------------------------------------------------- verification


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(marker: Path, path: Path, digest: str) -> None:
    """Record what was verified; best effort, since a missing marker only costs a re-hash."""
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = marker.with_name(f"{marker.name}.{uuid.uuid4().hex[:12]}.tmp")  # unique per writer
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record))
        os.replace(tmp, marker)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _digest_of(path: Path, marker: Path, expected: str) -> str | None:
    """The sha256 of ``path`` (None if absent), trusting the sidecar when it vouches for the file as is.

    Hashing a multi-GB file on every call is what the sidecar avoids; a file whose size or mtime
    changed since it was verified is hashed again.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    record = _read_marker(marker)
    if (
        record.get("sha256") == expected
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    ):
        return expected
    actual = _sha256_file(path)
    if actual == expected:
        _write_marker(marker, path, actual)
    return actual


def _marker_for(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


# -------------------------------------------------------------------------------------- progress


class _Progress:
    """A one-line stderr progress report: redrawn in place on a terminal, start and end lines otherwise."""

    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.total: int | None = None
        self._last = 0.0

    def start(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        if self.enabled and not self.tty:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            resume = f", resuming at {done / 1e6:.1f} MB" if done else ""
            print(f"vlzoo: downloading {self.label}{size}{resume}", file=self.stream, flush=True)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self._last > 0.25:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            pct = 100.0 * self.done / self.total
            text = f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB ({pct:.0f}%)"
        else:
            text = f"{self.done / 1e6:.1f} MB"
        self.stream.write(f"\rvlzoo: {self.label}: {text}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------- transfer


class _InterruptedError(Exception):
    """A transfer that stopped early for a reason that another attempt may not hit."""


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``'bytes 100-199/1000'`` → (100, 1000); ``'bytes 100-199/*'`` → (100, None); else None."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    start, _, _end = span.partition("-")
    if unit.lower() != "bytes":
        return None
    try:
        return int(start), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def _truncate(part: Path) -> None:
    with open(part, "wb"):
        pass


def _fetch_once(url: str, part: Path, *, timeout: float, progress: _Progress) -> None:
    """One HTTP attempt: append to ``part`` from its current size, or restart it when the server says so.

    Returns when the body is complete; raises :class:`_InterruptedError` for anything another attempt may fix
    and :class:`DownloadError` for anything it will not.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "vlzoo", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            # Nothing left to send: either the part is already whole, or it is longer than the file.
            size = (e.headers.get("Content-Range") or "").rpartition("/")[2].strip()
            if size.isdigit() and int(size) == offset:
                return
            _truncate(part)
            raise _InterruptedError(f"HTTP 416 for a resume at byte {offset}; restarting from 0") from None
        if e.code in _RETRY_STATUSES:
            raise _InterruptedError(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError: refused, DNS, timeout
        raise _InterruptedError(f"cannot connect: {e}") from e

    with response:
        if response.status == 206 and offset:
            crange = _parse_content_range(response.headers.get("Content-Range"))
            if crange is None or crange[0] != offset:
                # A range we did not ask for cannot be spliced in safely.
                _truncate(part)
                raise _InterruptedError(
                    f"server answered a resume at byte {offset} with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; restarting from 0"
                )
            total = crange[1]
            mode = "ab"
        elif response.status == 200:
            # A fresh start, or a server that ignores Range and sends the whole file again.
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise DownloadError(f"downloading {url} failed: unexpected HTTP {response.status}")

        progress.start(offset, total)
        received = offset
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _InterruptedError(f"connection lost after {received} bytes: {e!r}") from e
                if not chunk:
                    break
                # Written outside the try: a full disk is not a network hiccup worth retrying.
                f.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    # http.client returns a short body without complaint when the peer closes early.
    if total is not None and received < total:
        raise _InterruptedError(f"connection closed after {received} of {total} bytes")


def _fetch(url: str, part: Path, *, timeout: float, retries: int, progress: _Progress) -> None:
    """Fetch ``url`` into ``part``, resuming after dropped connections.

    ``retries`` bounds the consecutive attempts that add no bytes, so a flaky but progressing
    connection still finishes while a dead one gives up quickly.
    """
    failures = 0
    try:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, timeout=timeout, progress=progress)
                return
            except _InterruptedError as e:
                after = part.stat().st_size if part.exists() else 0
                failures = 0 if after > before else failures + 1
                if failures > retries:
                    raise DownloadError(
                        f"downloading {url} failed after {retries} retries: {e} "
                        f"(the {after} bytes received are kept in {part} and resumed next time)"
                    ) from e
                time.sleep(min(_BACKOFF_BASE_S * 2 ** max(failures - 1, 0), _BACKOFF_MAX_S))
    finally:
        progress.close()


# -------------------------------------------------------------------------------------- download


def download(
    spec: WeightSpec,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Return a local path to ``spec``'s file, downloading and verifying it first if needed.

    Args:
        spec: the weight file.
        cache_dir: weights directory to use instead of ``cache_dir() / "weights"``. Hugging Face files
            always go to huggingface_hub's cache (``HF_HOME`` / ``HF_HUB_CACHE``); only their
            verification sidecars are kept here.
        progress: print a progress line on stderr for URL downloads.
        timeout: seconds to wait for a connection or for the next bytes.
        retries: further attempts after a failure that made no progress (URL downloads).

    Raises:
        DownloadError: offline and not cached, HTTP error, connection failures beyond ``retries``.
        ChecksumError: the file's sha256 is not ``spec.sha256`` (the cache is left as it was).
    """
    weights_dir = _weights_dir(cache_dir)
    if spec.hf_hub_id is not None:
        return _download_hf(spec, weights_dir=weights_dir, timeout=timeout)
    return _download_url(spec, weights_dir=weights_dir, progress=progress, timeout=timeout, retries=retries)


def _download_url(
    spec: WeightSpec, *, weights_dir: Path, progress: bool, timeout: float, retries: int
) -> Path:
    # Both guaranteed by WeightSpec for a URL spec; the asserts narrow the types.
    assert spec.url is not None
    assert spec.sha256 is not None
    target = cache_path(spec, cache_dir=weights_dir)
    marker = _marker_for(target)
    if _digest_of(target, marker, spec.sha256) == spec.sha256:
        return target

    offline = _offline_var()
    if offline is not None:
        state = "has a different sha256 in" if target.exists() else "is not in"
        raise DownloadError(
            f"{spec.filename} {state} the vlzoo cache ({target}) and {offline}={os.environ[offline]} "
            f"forbids downloading it from {spec.url}. Unset {offline}, or place the file "
            f"(sha256 {spec.sha256}) there."
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        # Whoever held the lock before us may have just finished this very file.
        if _digest_of(target, marker, spec.sha256) == spec.sha256:
            return target
        part = target.with_name(target.name + ".part")
        leftover = part.exists() and part.stat().st_size > 0
        fetch_args = {"timeout": timeout, "retries": retries}
        _fetch(spec.url, part, progress=_Progress(spec.filename, progress), **fetch_args)
        actual = _sha256_file(part)
        if actual != spec.sha256 and leftover:
            # The mismatch may come from a stale part left by another run: one clean retry settles it.
            _truncate(part)
            _fetch(spec.url, part, progress=_Progress(spec.filename, progress), **fetch_args)
            actual = _sha256_file(part)
        if actual != spec.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"sha256 mismatch for {spec.filename} downloaded from {spec.url}: expected {spec.sha256}, "
                f"got {actual}. The download was discarded; the cache is unchanged."
            )
        os.replace(part, target)
        _write_marker(marker, target, actual)
    return target


def _download_hf(spec: WeightSpec, *, weights_dir: Path, timeout: float) -> Path:
    """Fetch through huggingface_hub so that its cache, auth, mirrors and offline rules apply."""
    offline = _offline_var()
    path = _cached_hf_file(spec, offline) if offline is not None else _fetch_hf(spec, timeout=timeout)
    if spec.sha256 is not None:
        _verify_hf_file(spec, path, weights_dir=weights_dir)
    return path


def _cached_hf_file(spec: WeightSpec, offline: str) -> Path:
    """The file from huggingface_hub's cache, looked up on disk only: offline, `hf_hub_download` is not
    called at all, since even with `local_files_only` it may resolve the hub's host."""
    assert spec.hf_hub_id is not None
    from huggingface_hub import constants, try_to_load_from_cache

    found = try_to_load_from_cache(spec.hf_hub_id, spec.filename, revision=spec.revision)
    if isinstance(found, str):
        return Path(found)
    raise DownloadError(
        f"{spec.source} is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {offline}={os.environ[offline]} forbids downloading it; "
        f"unset {offline} to download it"
    )


def _fetch_hf(spec: WeightSpec, *, timeout: float) -> Path:
    assert spec.hf_hub_id is not None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (  # re-exported there by every version vlzoo supports
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(
                spec.hf_hub_id,
                spec.filename,
                revision=spec.revision,
                etag_timeout=timeout,
                library_name="vlzoo",
            )
        )
    except LocalEntryNotFoundError as e:
        raise DownloadError(
            f"{spec.source} could not be reached and is not in the Hugging Face cache ({_first_line(e)})"
        ) from e
    except GatedRepoError as e:
        raise DownloadError(
            f"{spec.source}: the repo is gated; accept its terms and log in ({_first_line(e)})"
        ) from e
    except RepositoryNotFoundError as e:
        raise DownloadError(
            f"{spec.source}: no such repo, or it is private and no token was given ({_first_line(e)})"
        ) from e
    except RevisionNotFoundError as e:
        raise DownloadError(
            f"{spec.source}: no revision {spec.revision!r} in {spec.hf_hub_id} ({_first_line(e)})"
        ) from e
    except EntryNotFoundError as e:
        raise DownloadError(
            f"{spec.source}: no file {spec.filename!r} in {spec.hf_hub_id} ({_first_line(e)})"
        ) from e
    except Exception as e:  # HTTP errors, disk errors: its exception classes differ across versions
        raise DownloadError(f"downloading {spec.source} failed: {type(e).__name__}: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    """huggingface_hub's messages run over several lines; an error vlzoo prints is one."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _verify_hf_file(spec: WeightSpec, path: Path, *, weights_dir: Path) -> None:
    """Check a hub file against ``spec.sha256``, with the sidecar kept in vlzoo's cache, not HF's."""
    assert spec.sha256 is not None
    real = path.resolve()
    key = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    marker = weights_dir / "hf-verified" / f"{spec.sha256[:16]}-{key}.verified"
    actual = _digest_of(real, marker, spec.sha256)
    if actual == spec.sha256:
        return
    # The file belongs to huggingface_hub's cache: report it rather than delete it behind its back.
    raise ChecksumError(
        f"sha256 mismatch for {spec.source} (cached at {path}): expected {spec.sha256}, got {actual}. "
        "Remove that file (or pass the right sha256) to download it again."
    )
