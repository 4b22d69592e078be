"""Images/s through a DataLoader: toyworld from webdataset shards vs the same images from a folder, and
the same shards through open_clip's own webdataset pipeline (the anchor).

All read the same PNG bytes (the shards hold the files' own bytes), with the same transform
(clip-vit-tiny's training transform), the same tokenizer, batch size and number of workers; an epoch
includes worker start-up, as in training. Reads alternate within each repeat so that a change in machine
load affects all alike; the median over repeats is reported.
Ratio = shards images/s / folder images/s, and shards images/s / open_clip images/s (> 1: shards are faster).

open_clip's pipeline: `open_clip_train.data.get_wds_dataset` when it imports (it needs pandas), else the
same webdataset stages it chains for a finite (not resampled) training set: shard list, split by node and
by worker, `tarfile_to_samples`, sample shuffle, drop samples without image or caption, `decode("pilrgb")`,
`rename(image="jpg;png;jpeg;webp", text="txt")`, the image transform and per-sample tokenization,
`to_tuple`, `batched`, and a `WebLoader` with `batch_size=None`.

    python benchmarks/dataloading.py                       # 3000 images, 2 workers, 3 repeats
    python benchmarks/dataloading.py --images 5000 --workers 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import webdataset as wds
from torch.utils.data import DataLoader

from vlzoo.core import get_model_config, get_tokenizer
from vlzoo.core.data import (
    ImageTextCollator,
    KarpathySplits,
    ShardSource,
    build_transform,
    write_shards,
    write_toyworld,
)


def images_per_second(loader: DataLoader) -> tuple[float, int]:
    start = time.perf_counter()
    n = sum(len(batch["id"]) if isinstance(batch, dict) else len(batch[0]) for batch in loader)
    return n / (time.perf_counter() - start), n


def _has_caption_and_image(sample: dict) -> bool:
    # open_clip_train.data.filter_no_caption_or_no_image
    return "txt" in sample and any(ext in sample for ext in ("png", "jpg", "jpeg", "webp"))


def open_clip_loader(shards, preprocess, tokenizer, batch: int, workers: int) -> wds.WebLoader:
    """open_clip's webdataset training pipeline on `shards` (see the module docstring)."""
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([str(p) for p in shards]),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        wds.shuffle(bufsize=1000, initial=1000),
        wds.select(_has_caption_and_image),
        wds.decode("pilrgb", handler=wds.warn_and_continue),
        wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.map_dict(image=preprocess, text=lambda text: tokenizer([text]).input_ids[0]),
        wds.to_tuple("image", "text"),
        wds.batched(batch, partial=True),
    )
    return wds.WebLoader(pipeline, batch_size=None, shuffle=False, num_workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-count", type=int, default=250, help="samples per shard")
    args = parser.parse_args()

    cfg = get_model_config("clip-vit-tiny")
    transform, tokenizer = build_transform(cfg.vision, train=True), get_tokenizer("clip-vit-tiny")
    collate = ImageTextCollator(transform, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        json_path = write_toyworld(Path(tmp) / "toyworld", n_train=args.images, n_val=0, n_test=0)
        folder = KarpathySplits(json_path, "train", captions="random")
        written = time.perf_counter()
        shards = write_shards(folder, Path(tmp) / "shards" / "toyworld-%04d.tar", max_count=args.shard_count)
        sharded = time.perf_counter()
        print(
            f"toyworld: {args.images} PNGs written in {written - start:.1f} s; {len(shards)} shards in "
            f"{sharded - written:.1f} s ({sum(p.stat().st_size for p in shards) / 1e6:.1f} MB)"
        )
        loaders = {
            "folder": DataLoader(
                folder, args.batch, shuffle=True, num_workers=args.workers, collate_fn=collate
            ),
            "shards": DataLoader(
                ShardSource(shards, shuffle_buffer=1000),
                args.batch,
                num_workers=args.workers,
                collate_fn=collate,
            ),
            "open_clip": open_clip_loader(shards, transform, tokenizer, args.batch, args.workers),
        }
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.repeats):
            for name, loader in loaders.items():
                rate, n = images_per_second(loader)
                assert n == args.images, f"{name}: {n} images read, {args.images} expected"
                rates[name].append(rate)
    folder_rate, shard_rate, open_clip_rate = (
        statistics.median(rates[k]) for k in ("folder", "shards", "open_clip")
    )
    print(
        f"workers={args.workers} batch={args.batch} repeats={args.repeats} (median images/s, one epoch each)"
    )
    print(f"  folder (KarpathySplits):        {folder_rate:8.0f} images/s")
    print(f"  shards (ShardSource):           {shard_rate:8.0f} images/s")
    print(f"  open_clip webdataset pipeline:  {open_clip_rate:8.0f} images/s")
    print(f"  ratio shards/folder:            {shard_rate / folder_rate:8.2f} (goal >= 1.0)")
    print(f"  ratio shards/open_clip:         {shard_rate / open_clip_rate:8.2f} (goal >= 1.2)")


if __name__ == "__main__":
    main()
