"""Worker of tests/core/test_negclip.py's distributed case, started by torch.multiprocessing (a module of its
own: spawned children import the target by module name). Each rank holds its slice of a global batch of
images, captions and hard-negative captions and saves its NegCLIP loss and gradients."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from helpers.gloo import gloo_group
from vlzoo.core.losses import NegClipLoss

LOCAL_BATCH = 3
DIM = 8


def global_inputs(world_size: int) -> dict[str, torch.Tensor]:
    """The global batch, seeded: every process and the parent build the same one."""
    gen = torch.Generator().manual_seed(99)
    n = LOCAL_BATCH * world_size
    unit = [F.normalize(torch.randn(n, DIM, generator=gen, dtype=torch.float64), dim=-1) for _ in range(3)]
    return {
        "image": unit[0],
        "text": unit[1],
        "negative": unit[2],
        "scale": torch.tensor(5.0, dtype=torch.float64),
    }


def loss_and_grads(inputs: dict[str, torch.Tensor], **options) -> dict[str, torch.Tensor]:
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    loss = NegClipLoss(**options)(
        leaves["image"], leaves["text"], leaves["scale"], negative_text_features=leaves["negative"]
    )
    loss.backward()
    return {"loss": loss.detach(), **{f"grad_{k}": v.grad for k, v in leaves.items()}}


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        inputs = {k: (v if v.ndim == 0 else v[rows]) for k, v in global_inputs(world_size).items()}
        results = {
            "local": loss_and_grads(inputs, local_loss=True, gather_with_grad=True),
            "global": loss_and_grads(inputs, local_loss=False, gather_with_grad=True),
        }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
