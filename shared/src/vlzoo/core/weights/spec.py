"""`WeightSpec`: one pretrained weight file, where it comes from and how to read it.

A module of its own, below everything that uses it: the registry's tag tables, the hub that downloads the
file and the checkpoint loader all import it, and it imports nothing of vlzoo but the errors.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from vlzoo.core.errors import ConfigError

__all__ = ["FORMATS", "WeightSpec"]

FORMATS = ("safetensors", "pt")
_PT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _infer_format(filename: str) -> str:
    return "pt" if filename.lower().endswith(_PT_SUFFIXES) else "safetensors"


def _check_filename(filename: str, *, allow_subdirs: bool) -> None:
    """Refuse names that would escape the cache directory once joined to it."""
    if not isinstance(filename, str) or not filename:
        raise ConfigError(f"WeightSpec.filename must be a non-empty string, got {filename!r}")
    if "\\" in filename or "\x00" in filename:
        raise ConfigError(f"WeightSpec.filename {filename!r} contains a backslash or NUL")
    parts = PurePosixPath(filename).parts
    if filename.startswith("/") or any(p in (".", "..") for p in parts) or filename.endswith("/"):
        raise ConfigError(f"WeightSpec.filename {filename!r} must be a relative path without '.' or '..'")
    if not allow_subdirs and len(parts) != 1:
        raise ConfigError(f"WeightSpec.filename {filename!r} of a URL spec must be a bare file name")


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weight file and how to fetch and interpret it.

    Exactly one of ``url`` / ``hf_hub_id`` is set. A URL spec must carry its ``sha256`` (the cache is
    keyed by it, and an unpinned URL could silently change); for a hub spec it is optional and, when
    given, checked as well.
    """

    filename: str
    sha256: str | None = None
    url: str | None = None
    hf_hub_id: str | None = None
    revision: str | None = None
    format: str = "safetensors"
    converter: str = "vlzoo"
    # Excluded from the hash (a dict is unhashable) but still compared.
    config_overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.hf_hub_id is None):
            raise ConfigError(
                f"WeightSpec({self.filename!r}) needs exactly one of url / hf_hub_id "
                f"(got url={self.url!r}, hf_hub_id={self.hf_hub_id!r})"
            )
        _check_filename(self.filename, allow_subdirs=self.hf_hub_id is not None)
        if self.sha256 is not None:
            digest = str(self.sha256).strip().lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(
                    f"WeightSpec({self.filename!r}).sha256 is not a hex sha256: {self.sha256!r}"
                )
            object.__setattr__(self, "sha256", digest)
        if self.url is not None:
            if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
                raise ConfigError(f"WeightSpec({self.filename!r}).url must be http(s), got {self.url!r}")
            if self.sha256 is None:
                raise ConfigError(
                    f"WeightSpec({self.filename!r}) with url={self.url!r} needs a sha256: "
                    "URL weights are always verified"
                )
            if self.revision is not None:
                raise ConfigError(f"WeightSpec({self.filename!r}).revision only applies to hf_hub_id specs")
        else:
            repo = str(self.hf_hub_id)
            if not repo or repo.startswith("/") or repo.endswith("/") or repo.count("/") > 1:
                raise ConfigError(f"WeightSpec.hf_hub_id must look like 'org/repo', got {self.hf_hub_id!r}")
        if self.format not in FORMATS:
            raise ConfigError(
                f"WeightSpec({self.filename!r}).format must be one of {FORMATS}, got {self.format!r}"
            )
        # A private copy, so that mutating the caller's dict later cannot change a frozen spec.
        object.__setattr__(self, "config_overrides", dict(self.config_overrides))

    @classmethod
    def from_url(cls, url: str, sha256: str, *, filename: str | None = None, **kwargs: Any) -> WeightSpec:
        """A URL spec; ``filename`` defaults to the last path segment of the URL, ``format`` to its suffix."""
        if filename is None:
            filename = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(url).path).name)
        kwargs.setdefault("format", _infer_format(filename))
        return cls(filename=filename, sha256=sha256, url=url, **kwargs)

    @classmethod
    def from_hf_hub(cls, name: str, **kwargs: Any) -> WeightSpec:
        """Parse ``"hf-hub:org/repo[@revision]/path/to/file"`` (the ``hf-hub:`` prefix is optional)."""
        body = name[len("hf-hub:") :] if name.startswith("hf-hub:") else name
        parts = body.split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"expected 'hf-hub:org/repo[@revision]/filename', got {name!r}")
        org, repo, filename = parts
        if "@" in repo:
            repo, revision = repo.split("@", 1)
            if "revision" in kwargs:
                raise ConfigError(f"{name!r} names a revision and revision= was given as well")
            kwargs["revision"] = revision
        kwargs.setdefault("format", _infer_format(filename))
        return cls(filename=filename, hf_hub_id=f"{org}/{repo}", **kwargs)

    @classmethod
    def parse(cls, name: str, **kwargs: Any) -> WeightSpec:
        """A spec from an ``hf-hub:`` name or an http(s) URL (which then needs ``sha256=``)."""
        if name.startswith("hf-hub:"):
            return cls.from_hf_hub(name, **kwargs)
        if urllib.parse.urlsplit(name).scheme in ("http", "https"):
            sha256 = kwargs.pop("sha256", None)
            if sha256 is None:
                raise ConfigError(f"a URL weight spec needs sha256=..., none given for {name!r}")
            return cls.from_url(name, sha256, **kwargs)
        raise ConfigError(
            f"cannot parse weight source {name!r}: expected 'hf-hub:org/repo/file' or an http(s) URL"
        )

    @property
    def source(self) -> str:
        """Where the file comes from, as shown in messages."""
        if self.url is not None:
            return self.url
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf-hub:{self.hf_hub_id}{rev}/{self.filename}"
