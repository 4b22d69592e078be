"""Forward + backward time of vlzoo's ClipLoss / SigLipLoss vs open_clip's, in one run.

Measurements of the two implementations alternate within each repeat, so that a change in machine
load affects both alike; the median over repeats is reported. Ratio = open_clip time / vlzoo time
(> 1 means vlzoo is faster).

    python benchmarks/loss_speed.py                 # B=4096, D=512, float32, CPU
    python benchmarks/loss_speed.py --repeats 9 --batch 2048
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

from vlzoo.core.losses import ChunkedClipLoss, ClipLoss, SigLipLoss


def fwd_bwd_seconds(step: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    step().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunked", action="store_true", help="also time ChunkedClipLoss")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    # Unit-norm features, as the towers produce: unnormalized ones push sigmoid gradients into
    # float32 denormals, which makes CPU matmuls several times slower and the timing meaningless.
    image = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=-1).requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)

    open_clip_loss, vlzoo_loss = OpenClipLoss(), ClipLoss()
    open_siglip, vlzoo_siglip = OpenSigLipLoss(), SigLipLoss()
    chunked = ChunkedClipLoss(chunk_size=1024)
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
    if args.chunked:
        pairs["ChunkedClipLoss (vs open_clip ClipLoss)"] = (
            pairs["ClipLoss"][0],
            lambda: chunked(image, text, scale),
        )

    print(
        f"B={args.batch} D={args.dim} float32, forward+backward, CPU ({torch.get_num_threads()} threads), "
        f"median of {args.repeats}"
    )
    for name, (open_clip_step, vlzoo_step) in pairs.items():
        torch.testing.assert_close(vlzoo_step(), open_clip_step(), rtol=1e-5, atol=1e-5)
        fwd_bwd_seconds(open_clip_step), fwd_bwd_seconds(vlzoo_step)  # warm-up
        times: dict[str, list[float]] = {"open_clip": [], "vlzoo": []}
        for _ in range(args.repeats):
            times["open_clip"].append(fwd_bwd_seconds(open_clip_step))
            times["vlzoo"].append(fwd_bwd_seconds(vlzoo_step))
        t_open, t_vlzoo = statistics.median(times["open_clip"]), statistics.median(times["vlzoo"])
        print(
            f"  {name:12s} open_clip {t_open * 1e3:7.1f} ms  vlzoo {t_vlzoo * 1e3:7.1f} ms  "
            f"ratio open_clip/vlzoo = {t_open / t_vlzoo:.2f}x"
        )


if __name__ == "__main__":
    main()
