"""The decoded-image cache: bounded, least recently used out first, copies out; `ShardSource(cache_decoded=)`
and the folder sources' `cache_decoded` serve the second epoch from it with images equal to decoding them
again."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlzoo.core.data.shards as shards_module
import vlzoo.core.data.sources as sources_module
from vlzoo.core import get_model_config
from vlzoo.core.data import (
    DecodedImageCache,
    KarpathySplits,
    ShardSource,
    build_source,
    build_transform,
    check_data_options,
    write_shards,
    write_toyworld,
)
from vlzoo.core.errors import DataError

N = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("cache")
    toy = write_toyworld(root / "toy", n_train=N, n_val=0, n_test=0, image_size=32)
    return write_shards(KarpathySplits(toy, "train", captions="first"), root / "s-%02d.tar", max_count=5)


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = DecodedImageCache(2)
    for key in "abc":
        cache.put(key, np.full((2, 2), ord(key)))
    assert len(cache) == 2 and cache.get("a") is None  # "a" went first
    assert cache.get("b")[0, 0] == ord("b")  # "b" is now the most recently used
    cache.put("d", np.zeros((2, 2)))
    assert cache.get("c") is None and cache.get("b") is not None
    assert (cache.hits, cache.misses) == (2, 2)
    with pytest.raises(ValueError, match="max_items"):
        DecodedImageCache(0)


def test_what_the_cache_hands_out_can_be_changed_without_changing_it():
    cache = DecodedImageCache(4)
    image, array = Image.new("RGB", (4, 4), (10, 20, 30)), np.ones((3, 3))
    cache.put("image", image)
    cache.put("array", array)
    image.putpixel((0, 0), (0, 0, 0))  # the caller's own copy, changed after put
    array[0, 0] = 5
    out = cache.get("image")
    out.putpixel((1, 1), (0, 0, 0))
    cache.get("array")[1, 1] = 7
    assert cache.get("image").getpixel((0, 0)) == cache.get("image").getpixel((1, 1)) == (10, 20, 30)
    assert cache.get("array").sum() == 9


def _epoch(source: ShardSource) -> dict[str, torch.Tensor]:
    transform = build_transform(get_model_config("clip-vit-tiny").vision, train=False)
    return {s["__key__"]: transform(s["image"]) for s in source}


def test_a_second_epoch_comes_from_the_cache_equal_to_decoding(shards, monkeypatch):
    decoded = []
    real = shards_module.decode_member
    monkeypatch.setattr(shards_module, "decode_member", lambda *a: decoded.append(a[2]) or real(*a))
    plain = _epoch(ShardSource(shards, shuffle_buffer=0))
    assert len(decoded) == N
    cached = ShardSource(shards, shuffle_buffer=4, cache_decoded=N)
    first, second = _epoch(cached), _epoch(cached)
    assert len(decoded) == 2 * N  # the cached source decoded each image once, in its first epoch
    assert cached.image_cache().hits == N
    assert first.keys() == second.keys() == plain.keys()
    assert all(torch.equal(plain[k], first[k]) and torch.equal(plain[k], second[k]) for k in plain)


def test_a_small_cache_holds_only_its_size(shards):
    cached = ShardSource(shards, shuffle_buffer=0, cache_decoded=5)
    _epoch(cached)
    _epoch(cached)
    cache = cached.image_cache()
    assert len(cache) == 5
    # in file order, an LRU of 5 over 12 images always holds the last 5 read, and never the next one
    assert cache.hits == 0 and cache.misses == 2 * N
    assert ShardSource(shards).image_cache() is None  # off by default


def test_a_recipe_turns_the_cache_and_the_jpeg_draft_on_through_data_options(shards):
    check_data_options(["webdataset"], {"cache_decoded": 8, "jpeg_draft": [64, 32]})  # known keys pass
    pattern = str(shards[0].parent / "s-{00..02}.tar")
    source = build_source(
        pattern, "webdataset", "train", "first", {"cache_decoded": 8, "jpeg_draft": [64, 32]}
    )
    assert source.cache_decoded == 8 and source.jpeg_draft == (64, 32)
    assert build_source(pattern, "webdataset", "train", "first", {}).cache_decoded == 0  # off by default


# ------------------------------------------------------------------------------------ folder sources


@pytest.fixture(scope="module")
def toy_json(shards) -> Path:
    return shards[0].parent / "toy" / "toyworld.json"


def _folder_epoch(source) -> dict[str, torch.Tensor]:
    transform = build_transform(get_model_config("clip-vit-tiny").vision, train=False)
    return {s["id"]: transform(s["image"]) for s in (source[i] for i in range(len(source)))}


def test_a_folder_source_decodes_each_image_once_with_the_cache(toy_json, monkeypatch):
    decoded = []
    real = sources_module.decode_image
    monkeypatch.setattr(sources_module, "decode_image", lambda *a: decoded.append(str(a[0])) or real(*a))
    plain = _folder_epoch(KarpathySplits(toy_json, "train", captions="first"))
    assert len(decoded) == N
    cached = KarpathySplits(toy_json, "train", captions="first", cache_decoded=N)
    first, second = _folder_epoch(cached), _folder_epoch(cached)
    assert len(decoded) == 2 * N and len(set(decoded[N:])) == N  # each image decoded once, in epoch one
    assert (cached.image_cache().hits, cached.image_cache().misses) == (N, N)
    assert first.keys() == second.keys() == plain.keys()
    assert all(torch.equal(plain[k], first[k]) and torch.equal(plain[k], second[k]) for k in plain)
    assert KarpathySplits(toy_json, "train").image_cache() is None  # off by default


def test_a_folder_cache_keeps_captions_drawn_per_access_and_stays_in_its_process(toy_json):
    source = KarpathySplits(toy_json, "train", captions="random", cache_decoded=2)
    texts = {source[0]["text"] for _ in range(40)}  # toyworld images have several captions
    assert len(texts) > 1 and source.image_cache().hits == 39 and len(source.image_cache()) == 1
    copy = pickle.loads(pickle.dumps(source))  # as a spawned DataLoader worker receives it
    assert copy.image_cache() is not source.image_cache() and len(copy.image_cache()) == 0
    with pytest.raises(DataError, match=r"toyworld\.json: cache_decoded must be ≥ 0"):
        KarpathySplits(toy_json, "train", cache_decoded=-1)


@pytest.mark.parametrize("kind", ["karpathy", "jsonl"])
def test_a_recipe_turns_the_folder_cache_on_through_data_options(toy_json, tmp_path, kind):
    check_data_options([kind], {"cache_decoded": 4, "image_root": str(toy_json.parent)})  # known keys pass
    path = toy_json
    if kind == "jsonl":  # the same images as an open_clip-style JSONL of pairs
        path = tmp_path / "pairs.jsonl"
        path.write_text('{"image": "train/000000.png", "text": "a caption"}\n')
    source = build_source(
        str(path), kind, "train", "first", {"cache_decoded": 4, "image_root": str(toy_json.parent)}
    )
    assert source.cache_decoded == 4
    assert build_source(str(path), kind, "train", "first", {}).image_cache() is None  # off by default
