"""Peak memory and time of vlzoo's chunked losses vs open_clip's ClipLoss / SigLipLoss, forward + backward.

Each measurement runs in its own fresh subprocess so that no loss sees another's allocations. A
child builds its inputs, warms the kernels up on a tiny batch, records its resident set size (RSS),
resets the kernel's RSS high-water mark (``/proc/self/clear_refs``; ``getrusage`` peak elsewhere),
runs one forward + backward, and reports ``peak RSS - RSS before the loss`` (the memory the loss
itself needed) and the seconds it took. The kinds alternate within each repeat, so that a change in
machine load (the benchmark machine may be shared) affects both sides alike; the median time over
repeats is reported. Before anything is compared, the parent checks that vlzoo's loss value and
gradients equal open_clip's (float32, relative error < 1e-4).

    python benchmarks/loss_memory.py                         # B=16384, D=512, float32, both losses
    python benchmarks/loss_memory.py --batch 4096 --repeats 5 --losses clip
    python benchmarks/loss_memory.py --threads 1             # steadier on a shared machine

Goal (issue 12): at B=16384, peak <= 1/20 of open_clip's at <= 1.3x its time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import PeakMemory

# kind -> (loss family, implementation). The anchor of each family is open_clip's loss.
KINDS = {
    "open_clip ClipLoss": ("clip", "open_clip"),
    "vlzoo ChunkedClipLoss": ("clip", "vlzoo"),
    "open_clip SigLipLoss": ("siglip", "open_clip"),
    "vlzoo ChunkedSigLipLoss": ("siglip", "vlzoo"),
}
MEMORY_GOAL, TIME_GOAL, GRAD_TOL = 1 / 20, 1.3, 1e-4


def build_loss(kind: str, chunk_size: int):
    family, impl = KINDS[kind]
    if impl == "open_clip":
        from open_clip.loss import ClipLoss, SigLipLoss

        return ClipLoss() if family == "clip" else SigLipLoss()
    from vlzoo.core.losses import ChunkedClipLoss, ChunkedSigLipLoss

    return (
        ChunkedClipLoss(chunk_size=chunk_size)
        if family == "clip"
        else ChunkedSigLipLoss(chunk_size=chunk_size)
    )


def child(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    family = KINDS[args.child][0]
    loss_fn = build_loss(args.child, args.chunk_size)

    def inputs(batch: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        image = F.normalize(torch.randn(batch, args.dim, generator=gen), dim=-1).requires_grad_()
        text = F.normalize(torch.randn(batch, args.dim, generator=gen), dim=-1).requires_grad_()
        if family == "clip":
            # CLIP's clamped maximum: the hardest case numerically.
            return [image, text, torch.tensor(100.0, requires_grad=True)]
        # SigLIP's initialization (log-scale log 10, bias -10).
        return [image, text, torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)]

    loss_fn(*inputs(min(args.batch, 256))).backward()  # warm-up: thread pool, kernels
    args_in = inputs(args.batch)
    with PeakMemory() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = loss_fn(*args_in)
        loss.backward()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    if args.out:
        torch.save({"loss": loss.detach(), **{f"grad{i}": x.grad for i, x in enumerate(args_in)}}, args.out)
    print(
        json.dumps(
            {
                "peak_mib": memory.peak_mib,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "method": memory.method,
            }
        )
    )


def run_child(kind: str, args: argparse.Namespace, out: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind]
    cmd += ["--batch", str(args.batch), "--dim", str(args.dim), "--chunk-size", str(args.chunk_size)]
    cmd += ["--threads", str(args.threads)]
    if out is not None:
        cmd += ["--out", str(out)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_equal(anchor: Path, ours: Path) -> float:
    """Worst relative difference of vlzoo's loss and gradients to open_clip's."""
    import torch

    want, got = torch.load(anchor, weights_only=True), torch.load(ours, weights_only=True)
    worst = 0.0
    for key in want:
        a, b = want[key].double(), got[key].double()
        worst = max(worst, ((a - b).norm() / a.norm().clamp_min(1e-30)).item())
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per child (0: torch's default)")
    parser.add_argument("--losses", default="clip,siglip", help="comma-separated: clip, siglip")
    parser.add_argument("--child", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    families = [f.strip() for f in args.losses.split(",") if f.strip()]
    kinds = [kind for kind, (family, _) in KINDS.items() if family in families]
    print(
        f"B={args.batch} D={args.dim} float32, forward+backward, CPU ({args.threads or 'default'} threads), "
        f"chunk_size={args.chunk_size}, "
        f"median time of {args.repeats} interleaved runs, each in a fresh process"
    )
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {kind: Path(tmp) / f"{i}.pt" for i, kind in enumerate(kinds)}
        for repeat in range(args.repeats):
            for kind in kinds:
                # Gradients are saved (and compared) once; saving is outside the measured block anyway.
                results[kind].append(run_child(kind, args, outs[kind] if repeat == 0 else None))
            if repeat == 0:
                for family in families:
                    anchor, ours = (k for k in kinds if KINDS[k][0] == family)
                    worst = check_equal(outs[anchor], outs[ours])
                    verdict = "OK" if worst < GRAD_TOL else "MISSED"
                    print(
                        f"  {family}: loss and gradients, worst relative difference {worst:.2e} ({verdict})"
                    )

    for family in families:
        anchor, ours = (k for k in kinds if KINDS[k][0] == family)
        summary = {}
        for kind in (anchor, ours):
            peak = max(r["peak_mib"] for r in results[kind])
            seconds = statistics.median(r["seconds"] for r in results[kind])
            cpu_seconds = statistics.median(r["cpu_seconds"] for r in results[kind])
            summary[kind] = (peak, seconds, cpu_seconds)
            times = ", ".join(f"{r['seconds']:.2f}" for r in results[kind])
            print(
                f"  {kind:24s} peak {peak:9.1f} MiB above inputs ({results[kind][0]['method']}), "
                f"median {seconds:6.2f} s wall [{times}], {cpu_seconds:6.2f} s CPU"
            )
        memory_ratio = summary[ours][0] / summary[anchor][0]
        time_ratio = summary[ours][1] / summary[anchor][1]
        cpu_ratio = summary[ours][2] / summary[anchor][2]
        print(
            f"  {family}: memory vlzoo/open_clip = {memory_ratio:.4f} (1/{1 / memory_ratio:.1f}), goal <= 1/20: "
            f"{'OK' if memory_ratio <= MEMORY_GOAL else 'MISSED'}; time vlzoo/open_clip = {time_ratio:.2f}x, "
            f"goal <= {TIME_GOAL}x: {'OK' if time_ratio <= TIME_GOAL else 'MISSED'} "
            f"(CPU time ratio {cpu_ratio:.2f}x)"
        )


if __name__ == "__main__":
    main()
