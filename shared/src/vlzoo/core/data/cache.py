"""An in-memory LRU cache of decoded images, for datasets small enough that decoding dominates an epoch.

A small scene set read every epoch (toyworld, a few hundred GeoTIFF tiles whose decode costs as much as a
tiny model step) decodes the same files again and again; keeping the decoded images skips that work from
the second epoch on. The cache lives in the process that decodes: a DataLoader worker keeps its own, which
lasts across epochs only with `persistent_workers=True` (a fresh worker starts empty), and holds at most
`max_items` images, the least recently used leaving first.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from PIL import Image


def copy_image(image: Any) -> Any:
    """A copy a transform may change in place without changing the cached image (PIL, array, tensor)."""
    if isinstance(image, Image.Image | np.ndarray):
        return image.copy()
    if torch.is_tensor(image):
        return image.clone()
    return image


class DecodedImageCache:
    """At most `max_items` decoded images by key, least recently used out first; `get` returns a copy.

    `hits` and `misses` count the lookups of this process, so a run can tell whether the cache helps.
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError(f"a decoded-image cache needs max_items ≥ 1, got {max_items}")
        self.max_items = max_items
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        image = self._items.get(key)
        if image is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return copy_image(image)

    def get_or_decode(self, key: Hashable, decode: Callable[[], Any]) -> Any:
        """The image cached under `key`, else `decode()`'s, kept for next time."""
        image = self.get(key)
        if image is None:
            image = decode()
            self.put(key, image)
        return image

    def put(self, key: Hashable, image: Any) -> None:
        """Keep a copy of `image` (the caller's own may be changed by its transform)."""
        self._items[key] = copy_image(image)
        self._items.move_to_end(key)
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)


class ProcessImageCache:
    """The `DecodedImageCache` of the process that reads, made on its first use there: a source copied into
    a DataLoader worker (forked, or pickled) gets a cache of its own, empty, instead of sharing a parent's."""

    def __init__(self) -> None:
        self._cache: DecodedImageCache | None = None
        self._pid: int | None = None

    def get(self, max_items: int) -> DecodedImageCache | None:
        """This process's cache of `max_items` images; None when `max_items` is 0 (no caching)."""
        if max_items < 1:
            return None
        if self._cache is None or self._pid != os.getpid() or self._cache.max_items != max_items:
            self._cache, self._pid = DecodedImageCache(max_items), os.getpid()
        return self._cache

    def __getstate__(self) -> dict[str, Any]:
        return {"_cache": None, "_pid": None}  # decoded images don't travel to another process
