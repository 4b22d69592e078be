"""Worker of tests/core/test_losses_distributed.py, started by torch.multiprocessing.

It lives in its own module (not the test module) because spawned children import the target
function by module name, and pytest's importlib mode does not make test modules importable.
Each rank takes its slice of a global batch, runs every case, and saves per-case loss values and
gradients; the parent process compares them with a single-process run on the global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from helpers.gloo import gloo_group
from vlzoo.core.distributed import all_gather_features, get_rank, get_world_size
from vlzoo.core.losses import (
    ChunkedClipLoss,
    ChunkedSigLipLoss,
    ClipLoss,
    FilipLoss,
    MultiPositiveClipLoss,
    SigLipLoss,
)

LOCAL_BATCH = 3
DIM = 8
F64 = torch.float64


def global_inputs(world_size: int) -> dict[str, torch.Tensor]:
    """The global batch; seeded, so every process (and the parent) builds the same one."""
    gen = torch.Generator().manual_seed(1234)
    n = LOCAL_BATCH * world_size
    text = F.normalize(torch.randn(n, DIM, generator=gen, dtype=F64), dim=-1)
    text[n - 1] = text[0]  # a duplicate caption that sits on another rank
    text_mask = torch.ones(n, 5, dtype=torch.bool)
    text_mask[::2, 3:] = False
    image_mask = torch.ones(n, 4, dtype=torch.bool)
    image_mask[1, 2:] = False
    return {
        "image": F.normalize(torch.randn(n, DIM, generator=gen, dtype=F64), dim=-1),
        "text": text,
        "image_tokens": torch.randn(n, 4, DIM, generator=gen, dtype=F64) / 2,
        "text_tokens": torch.randn(n, 5, DIM, generator=gen, dtype=F64) / 2,
        "image_mask": image_mask,
        "text_mask": text_mask,
        # Several captions share an id across ranks, so positives cross rank boundaries.
        "ids": torch.arange(n) // 2,
        "scale": torch.tensor(5.0, dtype=F64),
        "bias": torch.tensor(-2.0, dtype=F64),
    }


def cases(world_size: int) -> dict[str, tuple[torch.nn.Module, tuple[str, ...]]]:
    """name -> (loss module, the inputs it takes). rank/world_size are mostly read from the group."""
    clip_like = ("image", "text", "scale")
    cases = {
        "clip_local": (ClipLoss(local_loss=True, gather_with_grad=True), clip_like),
        "clip_global": (ClipLoss(local_loss=False, gather_with_grad=True), clip_like),
        "clip_local_explicit_rank": (
            ClipLoss(True, True, label_smoothing=0.1, rank=get_rank(), world_size=world_size),
            clip_like,
        ),
        "chunked_local": (ChunkedClipLoss(chunk_size=2, local_loss=True, gather_with_grad=True), clip_like),
        "chunked_global_smoothing": (
            ChunkedClipLoss(chunk_size=4, gather_with_grad=True, label_smoothing=0.1),
            clip_like,
        ),
        "chunked_local_smoothing": (
            ChunkedClipLoss(chunk_size=2, local_loss=True, gather_with_grad=True, label_smoothing=0.2),
            clip_like,
        ),
        "filip_local": (
            FilipLoss(local_loss=True, gather_with_grad=True, chunk_size=2),
            ("image_tokens", "text_tokens", "scale", "image_mask", "text_mask"),
        ),
        "multipos_local": (
            MultiPositiveClipLoss(local_loss=True, gather_with_grad=True),
            ("image", "text", "scale", "ids", "ids"),
        ),
    }
    for impl in ("gather", "shift", "bidir"):
        cases[f"siglip_{impl}"] = (SigLipLoss(dist_impl=impl), ("image", "text", "scale", "bias"))
        cases[f"chunked_siglip_{impl}"] = (
            ChunkedSigLipLoss(chunk_size=2, dist_impl=impl),
            ("image", "text", "scale", "bias"),
        )
    return cases


def single_process_results(world_size: int) -> dict[str, dict[str, torch.Tensor]]:
    """Loss and gradients of every case computed by one process on the global batch."""
    return run_cases(global_inputs(world_size), world_size, rank=None)


def run_cases(inputs: dict[str, torch.Tensor], world_size: int, rank: int | None) -> dict:
    results = {}
    for name, (loss_fn, keys) in cases(world_size).items():
        if rank is None:  # the single-process reference: same module, one process
            loss_fn.rank, loss_fn.world_size = 0, 1
        args = [inputs[k].clone().requires_grad_(inputs[k].is_floating_point()) for k in keys]
        loss = loss_fn(*args)
        wrt = [(key, arg) for key, arg in zip(keys, args) if arg.requires_grad]
        grads = torch.autograd.grad(loss, [arg for _, arg in wrt])
        results[name] = {"loss": loss.detach(), **{f"grad_{key}": g for (key, _), g in zip(wrt, grads)}}
    return results


def local_slice(inputs: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    return {k: (v if v.dim() == 0 else v[sl]) for k, v in inputs.items()}


def check_helpers(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """all_gather_features without grad: the local slot keeps its graph, the others do not."""
    x = torch.full((2, 3), float(rank + 1), dtype=F64, requires_grad=True)
    gathered = all_gather_features(x, with_grad=False)
    (gathered * torch.arange(1, gathered.shape[0] + 1, dtype=F64)[:, None]).sum().backward()
    return {"gathered": gathered.detach(), "grad": x.grad}


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        assert get_rank() == rank and get_world_size() == world_size
        results = run_cases(local_slice(global_inputs(world_size), rank), world_size, rank)
        results["helpers"] = check_helpers(rank, world_size)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
