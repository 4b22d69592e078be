"""Recognition data and decoding throughput, ratios measured in one run.

    python benchmarks/ocr_recognition.py [--crops 2000] [--workers 2] [--batch 128] [--model dptr-parseq-tiny]

1. Reading: the same rendered word crops as an STR LMDB (`vlzoo.ocr.LmdbDataset`, one environment per
   worker) and as PNG files listed in a labels file (`WordCrops`), each through a DataLoader with
   `--workers` workers and the model's 32x128 evaluation transform: samples/s and their ratio.
2. Decoding: words/s of the model's decoder, autoregressive + 1 refinement (the default) vs parallel (NAR)
   + 1 refinement vs parallel alone, on the same batches of FMU memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vlzoo.core import create_model
from vlzoo.core.data import ImageTextCollator
from vlzoo.ocr.data.crops import WordCrops, write_ocr_words
from vlzoo.ocr.data.lmdb import LmdbDataset, create_lmdb


def samples_per_second(dataset, transform, workers: int, batch: int, epochs: int = 1) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        collate_fn=ImageTextCollator(transform, None, captions="first"),
        persistent_workers=workers > 0,
    )
    next(iter(loader))  # workers started, files warm in the page cache: measure the reading itself
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            seen += len(b["id"])
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def words_per_second(model, images: torch.Tensor, batch: int, **decode) -> float:
    model.eval()
    memories = [model.visual_memory(images[i : i + batch]) for i in range(0, len(images), batch)]
    model.decoder.decode(memories[0], **decode)  # warm-up
    start = time.perf_counter()
    for memory in memories:
        model.decoder.decode(memory, **decode)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--model", default="dptr-parseq-tiny")
    parser.add_argument("--decode-words", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labels = write_ocr_words(root / "words", n_train=args.crops, n_test=1, seed=0)
        create_lmdb(labels.parent, labels, root / "lmdb")
        model = create_model(args.model)
        transform = model.config.transform(train=False)
        files = WordCrops(labels)
        db = LmdbDataset(root / "lmdb")
        assert len(files) == len(db) == args.crops
        # alternated, best of 3 each: the machine's other load hits both alike
        png = lmdb = 0.0
        for _ in range(3):
            png = max(png, samples_per_second(files, transform, args.workers, args.batch))
            lmdb = max(lmdb, samples_per_second(db, transform, args.workers, args.batch))
        print(
            f"reading {args.crops} word crops, {args.workers} workers, batch {args.batch}, 32x128 transform:"
        )
        print(f"  STR LMDB    {lmdb:8.0f} samples/s")
        print(f"  PNG files   {png:8.0f} samples/s")
        print(f"  ratio LMDB / PNG: {lmdb / png:.2f}x")

        images = torch.stack(
            [transform(files[i]["image"]) for i in range(min(args.decode_words, len(files)))]
        )
        ar = words_per_second(model, images, args.batch, ar=True, refine_iters=1)
        nar_refine = words_per_second(model, images, args.batch, ar=False, refine_iters=1)
        nar = words_per_second(model, images, args.batch, ar=False, refine_iters=0)
        steps = model.config.decoder.max_length + 1
        print(
            f"decoding {len(images)} words with {args.model} ({steps} positions, untrained: every AR step runs):"
        )
        print(f"  autoregressive + 1 refinement {ar:8.0f} words/s")
        print(f"  parallel + 1 refinement       {nar_refine:8.0f} words/s   ({nar_refine / ar:.1f}x AR)")
        print(f"  parallel                      {nar:8.0f} words/s   ({nar / ar:.1f}x AR)")


if __name__ == "__main__":
    main()
