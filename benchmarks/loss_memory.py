"""Peak memory of ChunkedClipLoss vs ClipLoss, forward + backward, on CPU.

Each loss runs in its own fresh subprocess so that neither sees the other's allocations. A child
allocates its inputs, records its resident set size (RSS), resets the kernel's RSS high-water mark
(``/proc/self/clear_refs``; falls back to ``getrusage`` peak elsewhere), runs forward + backward,
and reports ``peak RSS - RSS before the loss``: the memory the loss itself needed. The children
also save their gradients so that the parent can check that both losses agree.

    python benchmarks/loss_memory.py                      # B=16384, D=512, float32
    python benchmarks/loss_memory.py --batch 4096 --chunk-size 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import PeakMemory


def child(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    from vlzoo.core.losses import ChunkedClipLoss, ClipLoss

    gen = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    scale = torch.tensor(100.0, requires_grad=True)  # CLIP's clamped maximum: the hardest case numerically
    loss_fn = ClipLoss() if args.child == "plain" else ChunkedClipLoss(chunk_size=args.chunk_size)

    with PeakMemory() as memory:
        start = time.perf_counter()
        loss = loss_fn(image, text, scale)
        loss.backward()
        seconds = time.perf_counter() - start

    torch.save({"loss": loss.detach(), "image": image.grad, "text": text.grad, "scale": scale.grad}, args.out)
    print(
        json.dumps(
            {
                "peak_mib": memory.peak_mib,
                "seconds": seconds,
                "method": memory.method,
            }
        )
    )


def run_child(kind: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--out", str(out)]
    cmd += ["--batch", str(args.batch), "--dim", str(args.dim), "--chunk-size", str(args.chunk_size)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--child", choices=["plain", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    print(f"B={args.batch} D={args.dim} float32, forward+backward, CPU, chunk_size={args.chunk_size}")
    with tempfile.TemporaryDirectory() as tmp:
        results, grads = {}, {}
        for kind in ("plain", "chunked"):
            out = Path(tmp) / f"{kind}.pt"
            results[kind] = run_child(kind, args, out)
            grads[kind] = torch.load(out, weights_only=True)
            os.remove(out)
            print(
                f"  {kind:8s} ClipLoss: peak {results[kind]['peak_mib']:9.1f} MiB above inputs "
                f"({results[kind]['method']}), {results[kind]['seconds']:.1f} s"
            )
    ratio = results["chunked"]["peak_mib"] / results["plain"]["peak_mib"]
    print(
        f"memory ratio chunked / plain = {ratio:.4f} (1/{1 / ratio:.1f}); "
        f"goal <= 0.1: {'OK' if ratio <= 0.1 else 'MISSED'}"
    )

    worst = 0.0
    for key in ("loss", "image", "text", "scale"):
        plain, chunked = grads["plain"][key].double(), grads["chunked"][key].double()
        rel = ((plain - chunked).norm() / plain.norm().clamp_min(1e-30)).item()
        worst = max(worst, rel)
        print(f"  {key:5s}: relative difference |plain - chunked| / |plain| = {rel:.2e}")
    print(f"gradients agree (float32, relative error < 1e-4): {'OK' if worst < 1e-4 else 'MISSED'}")


if __name__ == "__main__":
    main()
