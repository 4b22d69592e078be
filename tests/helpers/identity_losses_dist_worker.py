"""Worker of tests/core/test_identity_losses.py (CMPM across 2 gloo processes), started by
torch.multiprocessing; in its own module so that spawned children can import it by name."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from helpers.gloo import gloo_group
from vlzoo.core.losses import CMPMLoss

LOCAL_BATCH = 3
DIM = 6
F64 = torch.float64


def global_inputs(world_size: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    n = LOCAL_BATCH * world_size
    return {
        "image": torch.randn(n, DIM, generator=gen, dtype=F64),
        "text": torch.randn(n, DIM, generator=gen, dtype=F64),
        # identities shared across the rank boundary (rows 2 and 3 are one person)
        "ids": torch.tensor([0, 1, 2, 2, 1, 3])[:n],
    }


def run(inputs: dict[str, torch.Tensor], rank: int | None, world_size: int) -> dict[str, torch.Tensor]:
    loss_fn = CMPMLoss(local_loss=True, gather_with_grad=True)
    if rank is None:
        loss_fn.rank, loss_fn.world_size = 0, 1
    image = inputs["image"].clone().requires_grad_(True)
    text = inputs["text"].clone().requires_grad_(True)
    loss = loss_fn(image, text, inputs["ids"])
    g_image, g_text = torch.autograd.grad(loss, [image, text])
    return {"loss": loss.detach(), "grad_image": g_image, "grad_text": g_text}


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        inputs = {k: v[sl] for k, v in global_inputs(world_size).items()}
        torch.save(run(inputs, rank, world_size), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
