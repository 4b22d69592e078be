"""Images/s through a DataLoader: toyworld from vlzoo's shards (`ShardSource`), the same images from a folder
(`KarpathySplits`), and the same shards through open_clip's own webdataset pipeline (the anchor).

open_clip's pipeline is `open_clip_train.data.get_wds_dataset` itself (it needs pandas), as its training
script builds it for a finite, not resampled, training set: shard shuffle, split by node and worker,
`tarfile_to_samples`, a 5000-sample shuffle, `decode("pilrgb")`, the transform and per-sample tokenization,
`batched`, a `WebLoader` with persistent workers. All three read the same PNG bytes (the shards hold the
files' own bytes), with the same transform (clip-vit-tiny's), tokenizer, batch size and number of workers,
and all use persistent workers, as training does; each loader runs one untimed epoch first (worker start),
then the timed epochs alternate between the kinds within each repeat, so that a change in the machine's
load affects all alike; the median images/s over repeats is reported.

Beside images/s, each kind's CPU time per image (the main process and its workers, from /proc) is printed:
unlike images/s it hardly depends on what else the machine runs.

Before timing, the outputs are checked equal: with the evaluation transform (deterministic) every loader
must give the same multiset of (image tensor, token ids) over an epoch.

`--stages` first prints what each stage costs in this one process (CPU µs per sample, the least of three
passes): the shards' tar walk and grouping alone, a whole read of the shards (walk, shuffle buffer, parse,
decode) and of the folder (file read, decode), and the collation (transform, tokenization) both share.

`--worker-cpu N` adds N epochs of a paired measurement that hardly depends on the machine's load: the folder,
shards with no shuffle buffer and shards with the default buffer each get one persistent DataLoader worker
of their own, the three are read in lockstep (a batch of each in turn), and each worker's own CPU time per
image is compared with the folder worker's in the same epoch (median over epochs). It tells apart what the
shard format costs and what the shuffle buffer costs.

`--jpeg N` adds a second measurement: N toyworld scenes drawn at `--jpeg-size` pixels and stored as JPEGs
(quality 90), read from shards with and without `jpeg_draft` (1.25 × the model's input size): the images/s
of a full decode against a DCT-scaled one, and how far the drafted images are from the full ones after the
(evaluation) transform.

`cached` is `ShardSource(cache_decoded=...)`: its untimed first epoch fills each worker's cache of decoded
images, so its timed epochs (the second and later) show what the cache saves. `folder cached` is the folder
source with `cache_decoded`: shuffled indices reach either worker, so each worker's cache fills over several
epochs (half its images hit in the second epoch, three quarters in the third, ...).

    python benchmarks/dataloading.py                       # 3072 images, 2 workers, 5 repeats
    python benchmarks/dataloading.py --images 1000 --repeats 1 --stages
    python benchmarks/dataloading.py --images 1024 --jpeg 512       # and JPEG draft decoding
    python benchmarks/dataloading.py --repeats 1 --worker-cpu 8     # and per-worker CPU, paired
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace

import open_clip_train.data
import torch
from torch.utils.data import DataLoader
from webdataset.tariterators import tar_file_expander

from vlzoo.core import get_model_config, get_tokenizer
from vlzoo.core.data import (
    CsvPairs,
    ImageTextCollator,
    KarpathySplits,
    ShardSource,
    ToyWorld,
    build_transform,
    write_shards,
    write_toyworld,
)
from vlzoo.core.data.shards import shard_items

SHUFFLE_BUFFER = 1000

# webdataset 1.0 ends each shard's file stream with an empty dict, which open_clip 3.3's
# `group_by_keys_nothrow` (written for webdataset 0.2) can't take (KeyError 'fname'): its expander is given
# the end marker off, as webdataset 0.2 had it. Nothing else of open_clip's pipeline is touched.
open_clip_train.data.tar_file_expander = functools.partial(tar_file_expander, eof_value=None)


def pairs(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, token ids) of a vlzoo batch (a dict) or an open_clip one (a tuple)."""
    if isinstance(batch, dict):
        return batch["image"], batch["text"].input_ids
    return batch[0], batch[1]


def cpu_seconds(loader: Iterable) -> float:
    """CPU time so far of this process and of the loader's persistent workers (Linux /proc), which unlike
    images/s doesn't depend on what else the machine runs."""
    total = time.process_time()
    if not isinstance(loader, DataLoader):  # webdataset's WebLoader: a pipeline whose first stage is one
        loader = next(stage for stage in loader.pipeline if isinstance(stage, DataLoader))
    iterator = getattr(loader, "_iterator", None)
    for worker in getattr(iterator, "_workers", []):
        try:
            fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def epoch_rate(loader: Iterable) -> tuple[float, int, float]:
    """(images/s, images, CPU µs per image) of one epoch."""
    start, cpu = time.perf_counter(), cpu_seconds(loader)
    n = sum(len(pairs(batch)[0]) for batch in loader)
    return n / (time.perf_counter() - start), n, (cpu_seconds(loader) - cpu) / n * 1e6


def signatures(loader: Iterable) -> list[tuple[str, tuple[int, ...]]]:
    """Each sample of an epoch as (a hash of its image tensor, its token ids), sorted: a multiset."""
    out = []
    for batch in loader:
        for image, ids in zip(*pairs(batch)):
            digest = hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()
            out.append((digest, tuple(ids.tolist())))
    return sorted(out)


class OpenClipTokenizer:
    """vlzoo's tokenizer called as open_clip calls its own: `tokenizer(text)[0]` is one row of ids."""

    def __init__(self, tokenizer: Callable):
        self.tokenizer = tokenizer

    def __call__(self, texts) -> torch.Tensor:
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts)).input_ids


def open_clip_loader(shards: list[Path], transform, tokenizer, images: int, args) -> Iterable:
    """open_clip's training loader on `shards`, built by `open_clip_train.data.get_wds_dataset`."""
    pattern = f"{shards[0].parent}/{shards[0].stem[:-4]}{{0000..{len(shards) - 1:04d}}}.tar"
    options = SimpleNamespace(
        train_data=pattern,
        train_num_samples=images,
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=args.batch,
        world_size=1,
        workers=args.workers,
    )
    info = open_clip_train.data.get_wds_dataset(
        options, transform, is_train=True, tokenizer=OpenClipTokenizer(tokenizer)
    )
    return info.dataloader


def vlzoo_loaders(folder, shards, collate, args) -> dict[str, DataLoader]:
    common = {"collate_fn": collate, "num_workers": args.workers, "persistent_workers": args.workers > 0}
    return {
        "folder": DataLoader(folder, args.batch, shuffle=True, **common),
        "shards": DataLoader(ShardSource(shards, shuffle_buffer=SHUFFLE_BUFFER), args.batch, **common),
        "cached": DataLoader(
            ShardSource(shards, shuffle_buffer=SHUFFLE_BUFFER, cache_decoded=len(folder)),
            args.batch,
            **common,
        ),
        "folder_cached": DataLoader(
            KarpathySplits(folder.path, "train", captions="first", cache_decoded=len(folder)),
            args.batch,
            shuffle=True,
            **common,
        ),
    }


def jpeg_shards(root: Path, n: int, size: int, shard_count: int) -> list[Path]:
    """`n` toyworld scenes at `size` pixels as JPEG files, then shards of them (their bytes as they are)."""
    root.mkdir(parents=True)
    rows = []
    for i, sample in enumerate(ToyWorld("train", n, image_size=size, captions="first")):
        sample["image"].save(root / f"{i:06d}.jpg", quality=90)
        rows.append(f"{i:06d}.jpg,{sample['text']}\n")
    (root / "pairs.csv").write_text("filepath,title\n" + "".join(rows))
    return write_shards(CsvPairs(root / "pairs.csv"), root / "jpeg-%04d.tar", max_count=shard_count)


def jpeg_draft_figures(tmp: Path, cfg, tokenizer, transforms, args) -> None:
    shards = jpeg_shards(tmp / "jpeg", args.jpeg, args.jpeg_size, args.shard_count)
    draft = round(1.25 * cfg.vision.image_size)
    full_eval, draft_eval = (
        {
            s["__key__"]: transforms[False](s["image"])
            for s in ShardSource(shards, shuffle_buffer=0, jpeg_draft=d)
        }
        for d in (None, draft)
    )
    gap = max((full_eval[k] - draft_eval[k]).abs().mean().item() for k in full_eval)
    common = {"collate_fn": ImageTextCollator(transforms[True], tokenizer), "num_workers": args.workers}
    common["persistent_workers"] = args.workers > 0
    loaders = {
        name: DataLoader(
            ShardSource(shards, shuffle_buffer=SHUFFLE_BUFFER, jpeg_draft=d), args.batch, **common
        )
        for name, d in (("full", None), ("draft", draft))
    }
    for loader in loaders.values():
        epoch_rate(loader)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            rates[name].append(epoch_rate(loader)[0])
    full, drafted = (statistics.median(rates[k]) for k in ("full", "draft"))
    print(
        f"JPEG shards: {args.jpeg} images of {args.jpeg_size} px, jpeg_draft={draft} (median images/s, "
        f"persistent workers); transformed images differ by at most {gap:.3f} mean |Δ| (normalized units)"
    )
    print(f"  {'full decode:':42s} {full:8.0f} images/s")
    print(f"  {'jpeg_draft:':42s} {drafted:8.0f} images/s")
    print(f"  {'ratio draft/full:':42s} {drafted / full:8.2f}")


def worker_seconds(loader: DataLoader) -> float:
    """CPU time so far of the loader's single persistent worker (Linux /proc)."""
    worker = loader._iterator._workers[0]
    fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def worker_cpu(folder, shards: list[Path], collate, epochs: int, args) -> None:
    """Worker CPU µs per image of the folder and of shards with and without the shuffle buffer, one worker
    each, read in lockstep (see the module docstring)."""
    common = {"collate_fn": collate, "num_workers": 1, "persistent_workers": True, "batch_size": args.batch}
    loaders = {
        "folder": DataLoader(folder, shuffle=True, **common),
        "shards, no shuffle buffer": DataLoader(ShardSource(shards, shuffle_buffer=0), **common),
        f"shards, buffer {SHUFFLE_BUFFER}": DataLoader(
            ShardSource(shards, shuffle_buffer=SHUFFLE_BUFFER), **common
        ),
    }
    for loader in loaders.values():  # worker start-up
        for _ in loader:
            pass
    costs: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(epochs):
        iterators = {name: iter(loader) for name, loader in loaders.items()}
        start = {name: worker_seconds(loader) for name, loader in loaders.items()}
        counts = dict.fromkeys(loaders, 0)
        for batches in itertools.zip_longest(*iterators.values()):
            for name, batch in zip(loaders, batches):
                counts[name] += 0 if batch is None else len(pairs(batch)[0])
        for name, loader in loaders.items():
            costs[name].append((worker_seconds(loader) - start[name]) / counts[name] * 1e6)
    print(f"worker CPU µs per image (one worker per kind, read in lockstep, median of {epochs} epochs):")
    for name, cost in costs.items():
        paired = statistics.median(f / c for f, c in zip(costs["folder"], cost))
        print(f"  {name + ':':42s} {statistics.median(cost):8.1f}  folder/this, paired: {paired:5.3f}")


def stage_costs(folder, shards: list[Path], collate) -> None:
    """CPU µs per sample of each stage, in this process (see the module docstring)."""
    paths = [str(p) for p in shards]
    samples = [folder[i] for i in range(len(folder))]

    def walk() -> None:
        for path in paths:
            for _ in shard_items(path):
                pass

    def read_shards() -> None:
        for _ in ShardSource(paths, shuffle_buffer=SHUFFLE_BUFFER):
            pass

    def read_folder() -> None:
        for i in torch.randperm(len(folder)).tolist():
            folder[i]

    def collation() -> None:
        for start in range(0, len(samples), 128):
            collate(samples[start : start + 128])

    stages = {
        "shards: tar walk and grouping": walk,
        "shards: read (walk, buffer, parse, decode)": read_shards,
        "folder: read (open, decode)": read_folder,
        "both: collate (transform, tokenize)": collation,
    }
    print(f"stages (CPU µs per sample, one process, the least of 3 passes over {len(folder)} samples):")
    for name, stage in stages.items():
        costs = []
        for _ in range(3):
            start = time.process_time()
            stage()
            costs.append((time.process_time() - start) / len(folder) * 1e6)
        print(f"  {name + ':':42s} {min(costs):8.1f}")


def round_images(args) -> int:
    """open_clip drops each worker's partial last batch in training: give every worker whole shards and whole
    batches, so that all loaders read every image exactly once."""
    unit = math.lcm(args.batch * args.workers, args.shard_count * args.workers)
    images = -(-args.images // unit) * unit
    if images != args.images:
        print(f"--images {args.images} → {images}: whole batches of whole shards for each worker")
    return images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=3072)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shard-count", type=int, default=256, help="samples per shard")
    parser.add_argument("--stages", action="store_true", help="first print each stage's CPU cost")
    parser.add_argument("--worker-cpu", type=int, default=0, help="also this many paired worker epochs")
    parser.add_argument("--jpeg", type=int, default=0, help="also time JPEG draft decoding on this many")
    parser.add_argument("--jpeg-size", type=int, default=448, help="side of those JPEGs, in pixels")
    args = parser.parse_args()
    images = round_images(args)

    cfg = get_model_config("clip-vit-tiny")
    tokenizer = get_tokenizer("clip-vit-tiny")
    transforms = {train: build_transform(cfg.vision, train=train) for train in (False, True)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        json_path = write_toyworld(Path(tmp) / "toyworld", n_train=images, n_val=0, n_test=0)
        folder = KarpathySplits(json_path, "train", captions="first")  # what the shards hold, exactly
        written = time.perf_counter()
        shards = write_shards(folder, Path(tmp) / "shards" / "toyworld-%04d.tar", max_count=args.shard_count)
        print(
            f"toyworld: {images} PNGs written in {written - start:.1f} s; {len(shards)} shards in "
            f"{time.perf_counter() - written:.1f} s ({sum(p.stat().st_size for p in shards) / 1e6:.1f} MB)"
        )

        if args.stages:
            stage_costs(folder, shards, ImageTextCollator(transforms[True], tokenizer))

        def loaders(train: bool) -> dict[str, Iterable]:
            transform = transforms[train]
            out: dict[str, Iterable] = vlzoo_loaders(
                folder, shards, ImageTextCollator(transform, tokenizer), args
            )
            out["open_clip"] = open_clip_loader(shards, transform, tokenizer, images, args)
            return out

        checked = {name: signatures(loader) for name, loader in loaders(train=False).items()}
        for name, got in checked.items():
            assert len(got) == images, f"{name}: {len(got)} samples in an epoch, {images} expected"
            assert got == checked["open_clip"], f"{name}'s samples differ from open_clip's"
        print(
            f"outputs checked equal: {images} (image, tokens) pairs, the same in all {len(checked)} loaders"
        )

        timed = loaders(train=True)
        for name, loader in timed.items():  # worker start-up, and the cache's first fill
            assert epoch_rate(loader)[1] == images, name
        rates: dict[str, list[float]] = {name: [] for name in timed}
        cpus: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.repeats):
            for name, loader in timed.items():
                rate, n, cpu = epoch_rate(loader)
                assert n == images, f"{name}: {n} images read, {images} expected"
                rates[name].append(rate)
                cpus[name].append(cpu)
        report(rates, cpus, images, args)
        del timed  # its persistent workers go
        if args.worker_cpu:
            collate = ImageTextCollator(transforms[True], tokenizer)
            worker_cpu(folder, shards, collate, args.worker_cpu, args)
        if args.jpeg:
            jpeg_draft_figures(Path(tmp), cfg, tokenizer, transforms, args)


def report(rates: dict[str, list[float]], cpus: dict[str, list[float]], images: int, args) -> None:
    rate = {name: statistics.median(r) for name, r in rates.items()}
    cpu = {name: statistics.median(c) for name, c in cpus.items()}
    print(
        f"workers={args.workers} batch={args.batch} repeats={args.repeats} images={images} "
        "(median images/s of the epochs after the first; persistent workers)"
    )
    labels = {
        "folder": "folder (KarpathySplits)",
        "shards": "shards (ShardSource)",
        "open_clip": "open_clip (get_wds_dataset)",
        "cached": "shards, decoded-image cache (2nd+ epoch)",
        "folder_cached": "folder, decoded-image cache (2nd+ epoch)",
    }
    for name, label in labels.items():
        print(f"  {label + ':':42s} {rate[name]:8.0f} images/s {cpu[name]:8.0f} CPU µs/image")
    for (a, b), goal in {
        ("shards", "open_clip"): 1.2,
        ("shards", "folder"): 1.0,
        ("cached", "shards"): None,
        ("folder_cached", "folder"): None,
    }.items():
        print(
            f"  {f'ratio {a}/{b}:':42s} {rate[a] / rate[b]:8.2f} images/s {cpu[b] / cpu[a]:8.2f} (1/CPU per image)"
            + (f"  goal images/s >= {goal}" if goal else "")
        )


if __name__ == "__main__":
    main()
