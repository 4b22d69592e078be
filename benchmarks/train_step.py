"""Training-step throughput of vlzoo vs open_clip's own training step, same architecture and batch, same run.

A step is what both libraries do per batch: encode images and captions, the symmetric contrastive loss,
backward, AdamW. Inputs are made once (random pixels, CLIP-tokenized captions) so that data loading is not
measured. Prints samples/s for each and the ratio vlzoo / open_clip (goal: >= 1.0).

    python benchmarks/train_step.py                    # clip-vit-tiny-sized towers, batch 128
    python benchmarks/train_step.py --arch vit-b-32 --batch 32 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch
from open_clip.loss import ClipLoss as OpenClipLoss

import vlzoo.core as vz
from vlzoo.core.losses import ClipLoss

# open_clip config with the same towers as vlzoo's clip-vit-tiny (pre-norm ViT, patch 8, 4 heads of 16).
TINY_OPEN_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 4},
}
ARCHS = {
    "tiny": ("clip-vit-tiny", TINY_OPEN_CLIP, 64, 32),
    "vit-b-32": ("clip-vit-b-32", "ViT-B-32", 224, 77),
}


def _open_clip_model(spec) -> torch.nn.Module:
    if isinstance(spec, str):
        return open_clip.create_model(spec)
    open_clip.factory._MODEL_CONFIGS["bench-tiny"] = spec  # register the config as open_clip's own
    return open_clip.create_model("bench-tiny")


def _time_steps(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    name, oc_spec, image_size, context = ARCHS[args.arch]
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, image_size, image_size)
    captions = [f"a small red circle above a blue square number {i}" for i in range(args.batch)]
    tokens = open_clip.tokenize(captions, context_length=context)

    ours = vz.create_model(name).train()
    theirs = _open_clip_model(oc_spec).train()
    our_loss, their_loss = ClipLoss(), OpenClipLoss()
    our_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    their_opt = torch.optim.AdamW(theirs.parameters(), lr=1e-4)

    def vlzoo_step():
        out = ours({"image": images, "text": tokens})
        our_opt.zero_grad(set_to_none=True)
        our_loss(out["image_features"], out["text_features"], out["logit_scale"]).backward()
        our_opt.step()

    def open_clip_step():
        image_features, text_features, logit_scale = theirs(images, tokens)
        their_opt.zero_grad(set_to_none=True)
        their_loss(image_features, text_features, logit_scale).backward()
        their_opt.step()

    print(
        f"arch {args.arch}: vlzoo {name} vs open_clip, batch {args.batch}, {torch.get_num_threads()} threads"
    )
    # Interleave the two so that both see the same machine load.
    ours_s, theirs_s = [], []
    for _ in range(3):
        ours_s.append(_time_steps(vlzoo_step, args.steps // 3 or 1, args.warmup))
        theirs_s.append(_time_steps(open_clip_step, args.steps // 3 or 1, args.warmup))
    ours_t, theirs_t = statistics.median(ours_s), statistics.median(theirs_s)
    print(f"vlzoo     {args.batch / ours_t:9.1f} samples/s  ({ours_t * 1e3:.1f} ms/step)")
    print(f"open_clip {args.batch / theirs_t:9.1f} samples/s  ({theirs_t * 1e3:.1f} ms/step)")
    print(f"ratio vlzoo/open_clip = {theirs_t / ours_t:.2f}x")


if __name__ == "__main__":
    main()
