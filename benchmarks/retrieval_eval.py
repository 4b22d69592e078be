"""Wall time and peak memory of chunked retrieval_metrics vs the floor of its similarity products, on CPU.

Features are random, L2-normalized, float32, with ``--captions-per-image`` captions per image. Two runs,
each in its own fresh subprocess so that neither sees the other's allocations:

- ``metrics``: ``retrieval_metrics`` (both directions, ranks, recalls, median ranks);
- ``floor``: the same similarity blocks with the same chunking, and nothing else (no ranking): the time
  any exact evaluation on these inputs needs, whatever it does with the scores.

Each child generates its inputs, records its resident set size (RSS), resets the kernel's RSS high-water
mark (``/proc/self/clear_refs``; ``getrusage`` peak elsewhere), runs, and reports ``peak RSS - RSS before``:
the memory the evaluation itself needed on top of its inputs. The full ``N_img × N_txt`` float32 matrix
is never materialized; its size is printed for comparison only.

The target size (100k images × 500k captions × 512) is about 1e14 FLOPs for the two directions: about 20
minutes of matrix products alone on 2 CPU cores. The script first times a few blocks at the target size
and, when the two runs would exceed ``--budget-minutes``, measures ``--fallback-images`` instead and
extrapolates (time scales with N_img × N_txt at fixed chunk memory; the block memory does not grow).

    python benchmarks/retrieval_eval.py                       # 100k x 500k if it fits the budget
    python benchmarks/retrieval_eval.py --images 20000        # 20k images x 100k captions
    python benchmarks/retrieval_eval.py --force               # the target size, however long
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from peak_memory import PeakMemory


def make_features(n_images: int, captions_per_image: int, dim: int, seed: int = 0):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n_images, dim, generator=gen), dim=-1)
    texts = F.normalize(torch.randn(n_images * captions_per_image, dim, generator=gen), dim=-1)
    t2i = torch.arange(n_images).repeat_interleave(captions_per_image)
    return images, texts, t2i


def similarity_floor(images, texts, chunk_size: int | None) -> None:
    """The blocks ``retrieval_ranks`` computes (same shapes, same order), with nothing done to them."""
    import torch

    from vlzoo.core.eval import auto_chunk_size

    with torch.inference_mode():
        for queries, gallery in ((images, texts), (texts, images)):
            chunk = chunk_size or auto_chunk_size(gallery.shape[0])
            gallery_t = gallery.T
            for start in range(0, queries.shape[0], chunk):
                queries[start : start + chunk] @ gallery_t


def child(args: argparse.Namespace) -> None:
    import torch

    from vlzoo.core.eval import retrieval_metrics

    images, texts, t2i = make_features(args.images, args.captions_per_image, args.dim)
    with PeakMemory() as memory:
        start = time.perf_counter()
        metrics = None
        if args.child == "metrics":
            metrics = retrieval_metrics(images, texts, t2i, chunk_size=args.chunk_size)
        else:
            similarity_floor(images, texts, args.chunk_size)
        seconds = time.perf_counter() - start
    inputs_mib = sum(t.numel() * t.element_size() for t in (images, texts, t2i)) / 2**20
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": memory.peak_mib,
                "inputs_mib": inputs_mib,
                "method": memory.method,
                "threads": torch.get_num_threads(),
                "metrics": metrics,
            }
        )
    )


def run_child(kind: str, args: argparse.Namespace, n_images: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--images", str(n_images)]
    cmd += ["--captions-per-image", str(args.captions_per_image), "--dim", str(args.dim)]
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def estimate_seconds(args: argparse.Namespace, n_images: int, blocks: int = 3) -> float:
    """Seconds for both runs at ``n_images``, from timing a few real-size blocks of each direction.

    Ranking adds one in-place comparison pass and a row sum per block (~10% of the product), so
    metrics + floor ~ 2.2 floors; the estimate is meant to decide whether to run, not to be reported.
    """
    import torch

    from vlzoo.core.eval import auto_chunk_size

    images, texts, _ = make_features(n_images, args.captions_per_image, args.dim)
    floor = 0.0
    with torch.inference_mode():
        for queries, gallery in ((images, texts), (texts, images)):
            chunk = args.chunk_size or auto_chunk_size(gallery.shape[0])
            n_blocks = -(-queries.shape[0] // chunk)
            gallery_t = gallery.T
            queries[:chunk] @ gallery_t  # warm-up
            start = time.perf_counter()
            for b in range(min(blocks, n_blocks)):
                queries[b * chunk : (b + 1) * chunk] @ gallery_t
            per_block = (time.perf_counter() - start) / min(blocks, n_blocks)
            floor += per_block * n_blocks
    return 2.2 * floor


def _fmt_bytes(n: float) -> str:
    decimal = f" = {n / 1e9:.1f} GB" if n >= 1e9 else ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {unit}{decimal}"
        n /= 1024
    return f"{n:.1f} PiB{decimal}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: auto (2**26-element blocks)")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--fallback-images", type=int, default=20_000)
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs of each kind; best time kept"
    )
    parser.add_argument("--force", action="store_true", help="run the requested size whatever the estimate")
    parser.add_argument("--child", choices=["metrics", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    target = args.images
    n_images = target
    if not args.force:
        est = estimate_seconds(args, target)
        print(
            f"estimated time for both runs at {target} images: {est / 60:.1f} min (budget {args.budget_minutes})"
        )
        if est > 60 * args.budget_minutes and args.fallback_images < target:
            n_images = args.fallback_images
            print(f"-> measuring {n_images} images instead and extrapolating to {target}")
    n_txt = n_images * args.captions_per_image
    print(
        f"N_img={n_images} N_txt={n_txt} D={args.dim} float32, CPU, chunk_size={args.chunk_size or 'auto'}; "
        f"full similarity matrix would be {_fmt_bytes(4 * n_images * n_txt)} (not materialized)"
    )
    # Interleaved repeats, best time kept: other processes on a shared machine only ever slow a run down.
    runs: dict[str, list[dict]] = {"metrics": [], "floor": []}
    for _ in range(args.repeats):
        for kind in runs:
            runs[kind].append(run_child(kind, args, n_images))
    results = {kind: min(r, key=lambda x: x["seconds"]) for kind, r in runs.items()}
    for kind, label in (("metrics", "retrieval_metrics"), ("floor", "similarity-block floor")):
        r = results[kind]
        times = ", ".join(f"{x['seconds']:.1f}" for x in runs[kind])
        print(
            f"  {label:24s} {r['seconds']:8.1f} s (runs: {times})   peak "
            f"{max(x['peak_mib'] for x in runs[kind]):7.1f} MiB above inputs "
            f"({r['inputs_mib']:.0f} MiB of inputs; {r['method']}; {r['threads']} threads)"
        )
    gflops = 2 * 2 * n_images * n_txt * args.dim / results["floor"]["seconds"] / 1e9
    print(
        f"  floor throughput: {gflops:.0f} GFLOP/s; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    overhead = results["metrics"]["seconds"] / results["floor"]["seconds"]
    print(f"  ranking overhead: metrics / floor = {overhead:.2f}x")
    print("  metrics (random features, chance level):")
    for key, value in results["metrics"]["metrics"].items():
        print(f"    {key:26s} {value:10.3f}")
    if n_images != target:
        factor = (target * target * args.captions_per_image) / (n_images * n_txt)
        print(
            f"extrapolated to {target} x {target * args.captions_per_image} (x{factor:.0f} similarities): "
            f"retrieval_metrics ~{results['metrics']['seconds'] * factor / 60:.0f} min, "
            f"floor ~{results['floor']['seconds'] * factor / 60:.0f} min; peak above inputs stays about one "
            f"similarity block (auto chunking keeps blocks at 2**26 elements = 256 MiB) while the inputs grow "
            f"x{target / n_images:.0f}; full matrix {_fmt_bytes(4 * target * target * args.captions_per_image)} "
            f"(not materialized)"
        )


if __name__ == "__main__":
    main()
