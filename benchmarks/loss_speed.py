"""Forward + backward time of vlzoo's ClipLoss / SigLipLoss and of their chunked versions vs open_clip's
ClipLoss / SigLipLoss, in one run.

Each pair's values are checked equal first. Measurements of the two implementations alternate within each
repeat, so that a change in machine load (the benchmark machine may be shared) affects both alike; the
median over repeats is reported, in wall-clock and in CPU time. Ratio = open_clip time / vlzoo time
(> 1 means vlzoo is faster). The peak memory of the chunked losses is measured by loss_memory.py.

    python benchmarks/loss_speed.py                 # B=4096, D=512, float32, CPU
    python benchmarks/loss_speed.py --repeats 9 --batch 2048 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from vlzoo.core.losses import ChunkedClipLoss, ChunkedSigLipLoss, ClipLoss, SigLipLoss


def fwd_bwd_seconds(step: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(wall, CPU) seconds of one forward + backward."""
    start, cpu_start = time.perf_counter(), time.process_time()
    step().backward()
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    # Unit-norm features, as the towers produce: unnormalized ones push sigmoid gradients into
    # float32 denormals, which makes CPU matmuls several times slower and the timing meaningless.
    image = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)

    open_clip_loss, vlzoo_loss = OpenClipLoss(), ClipLoss()
    open_siglip, vlzoo_siglip = OpenSigLipLoss(), SigLipLoss()
    chunked, chunked_siglip = ChunkedClipLoss(chunk_size=args.chunk_size), ChunkedSigLipLoss(args.chunk_size)
    pairs = {
        "ClipLoss": (
            lambda: open_clip_loss(image, text, scale),
            lambda: vlzoo_loss(image, text, scale),
        ),
        "SigLipLoss": (
            lambda: open_siglip(image, text, scale, bias),
            lambda: vlzoo_siglip(image, text, scale, bias),
        ),
    }
    pairs["ChunkedClipLoss"] = (pairs["ClipLoss"][0], lambda: chunked(image, text, scale))
    pairs["ChunkedSigLipLoss"] = (pairs["SigLipLoss"][0], lambda: chunked_siglip(image, text, scale, bias))

    print(
        f"B={args.batch} D={args.dim} float32, forward+backward, CPU ({torch.get_num_threads()} threads), "
        f"median of {args.repeats}"
    )
    for name, (open_clip_step, vlzoo_step) in pairs.items():
        torch.testing.assert_close(vlzoo_step(), open_clip_step(), rtol=1e-5, atol=1e-5)
        fwd_bwd_seconds(open_clip_step), fwd_bwd_seconds(vlzoo_step)  # warm-up
        times: dict[str, list[tuple[float, float]]] = {"open_clip": [], "vlzoo": []}
        for _ in range(args.repeats):
            times["open_clip"].append(fwd_bwd_seconds(open_clip_step))
            times["vlzoo"].append(fwd_bwd_seconds(vlzoo_step))
        wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
        print(
            f"  {name:17s} open_clip {wall['open_clip'] * 1e3:8.1f} ms  vlzoo {wall['vlzoo'] * 1e3:8.1f} ms  "
            f"ratio open_clip/vlzoo = {wall['open_clip'] / wall['vlzoo']:.2f}x wall, "
            f"{cpu['open_clip'] / cpu['vlzoo']:.2f}x CPU time"
        )


if __name__ == "__main__":
    main()
