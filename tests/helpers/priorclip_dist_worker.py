"""Worker of tests/remote_sensing/test_priorclip.py: PriorCLIP's AttributionLoss on 2 gloo processes.

Each rank holds half of a global batch whose classes straddle the ranks; it saves its loss and its
gradients, which the parent compares with one process computing the loss on the whole batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from helpers.gloo import gloo_group
from vlzoo.remote_sensing.priorclip import AttributionLoss

LOCAL_BATCH = 4
DIM = 6
F64 = torch.float64


def global_inputs(world_size: int) -> dict[str, torch.Tensor]:
    """The global batch, seeded so that every process builds the same one."""
    gen = torch.Generator().manual_seed(7)
    n = LOCAL_BATCH * world_size
    return {
        "image": F.normalize(torch.randn(n, DIM, generator=gen, dtype=F64), dim=-1),
        "text": F.normalize(torch.randn(n, DIM, generator=gen, dtype=F64), dim=-1),
        # class 3 lives on rank 0 and rank 1; class 5 only on rank 1; class 0 only on rank 0
        "class_ids": torch.tensor([3, 0, 3, 0, 5, 3, 5, 9])[:n],
        "scale": torch.tensor(4.0, dtype=F64),
    }


def cases() -> dict[str, AttributionLoss]:
    return {
        "local": AttributionLoss(local_loss=True, gather_with_grad=True),
        "global": AttributionLoss(local_loss=False, gather_with_grad=True),
        "local_distinct": AttributionLoss(local_loss=True, gather_with_grad=True, per_sample_centres=False),
    }


def run_cases(inputs: dict[str, torch.Tensor], single_process: bool) -> dict[str, dict[str, torch.Tensor]]:
    results = {}
    for name, loss_fn in cases().items():
        if single_process:
            loss_fn.rank, loss_fn.world_size = 0, 1
        image = inputs["image"].clone().requires_grad_(True)
        text = inputs["text"].clone().requires_grad_(True)
        scale = inputs["scale"].clone().requires_grad_(True)
        loss = loss_fn(image, text, inputs["class_ids"], scale)
        grads = torch.autograd.grad(loss, [image, text, scale])
        results[name] = {
            "loss": loss.detach(),
            "grad_image": grads[0],
            "grad_text": grads[1],
            "grad_scale": grads[2],
        }
    return results


def single_process_results(world_size: int) -> dict[str, dict[str, torch.Tensor]]:
    return run_cases(global_inputs(world_size), single_process=True)


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        inputs = global_inputs(world_size)
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        local = {k: (v if v.dim() == 0 else v[rows]) for k, v in inputs.items()}
        torch.save(run_cases(local, single_process=False), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
