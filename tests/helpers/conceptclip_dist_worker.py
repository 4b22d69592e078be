"""Worker of tests/medical/test_conceptclip.py's distributed test, started by torch.multiprocessing.

Each rank holds its slice of a global batch of images and the concepts of its own captions (a different
number on each rank), computes ConceptAlignLoss and its gradients, and saves them; the parent compares
them with one process holding the whole batch. The same function builds the global batch everywhere.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from helpers.gloo import gloo_group
from vlzoo.medical.conceptclip import ConceptAlignLoss

IMAGES_PER_RANK = 3
PATCHES = 4
DIM = 8
F64 = torch.float64
# Per image of the global batch (6 images, 3 per rank), the concept ids its caption mentions; id 7 appears
# on both ranks (a positive across the rank boundary), image 1 mentions id 3 twice (a duplicate span).
CAPTIONS = {
    "unequal": [[1, 7], [3, 3], [], [7, 2, 5], [4], [6, 8, 7]],
    "rank_without_concepts": [[1, 7], [3, 3], [2], [], [], []],
}


def global_inputs(layout: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(4321)
    captions = CAPTIONS[layout]
    owner = torch.tensor([i for i, ids in enumerate(captions) for _ in ids], dtype=torch.long)
    ids = torch.tensor([c for c_ids in captions for c in c_ids], dtype=torch.long)
    n_images = len(captions)
    return {
        "patches": F.normalize(torch.randn(n_images, PATCHES, DIM, generator=gen, dtype=F64), dim=-1),
        "concepts": F.normalize(torch.randn(len(ids), DIM, generator=gen, dtype=F64), dim=-1),
        "owner": owner,
        "ids": ids,
        "scale": torch.tensor(4.0, dtype=F64),
        "bias": torch.tensor(-1.5, dtype=F64),
    }


def targets(owner: torch.Tensor, ids: torch.Tensor, image_rows: range, by_cui: bool) -> torch.Tensor:
    """[images, concepts]: the image's caption mentions the concept's id (or holds the span itself)."""
    rows = torch.tensor(list(image_rows))
    own = owner[None, :] == rows[:, None]
    if not by_cui:
        return own
    mentioned = [set(ids[owner == r].tolist()) for r in image_rows]
    return torch.tensor([[int(c) in m for c in ids] for m in mentioned], dtype=torch.bool)


CASES = {
    f"{layout}_{mode}_{impl}": (layout, mode == "cui", impl)
    for layout in CAPTIONS
    for mode in ("cui", "caption")
    for impl in ("bidir", "shift", "gather")
}


def run_case(name: str, rank: int | None, world_size: int) -> dict[str, torch.Tensor]:
    """Loss and gradients of one case: on rank `rank`'s slice, or (rank None) on the whole batch."""
    layout, by_cui, impl = CASES[name]
    g = global_inputs(layout)
    if rank is None:
        images, concepts = range(len(g["patches"])), torch.ones(len(g["owner"]), dtype=torch.bool)
        loss_fn = ConceptAlignLoss(rank=0, world_size=1, dist_impl=impl)
    else:
        images = range(rank * IMAGES_PER_RANK, (rank + 1) * IMAGES_PER_RANK)
        concepts = (g["owner"] >= images.start) & (g["owner"] < images.stop)
        loss_fn = ConceptAlignLoss(dist_impl=impl)
    owner, ids = g["owner"][concepts], g["ids"][concepts]
    patches = g["patches"][images.start : images.stop].clone().requires_grad_(True)
    concept_features = g["concepts"][concepts].clone().requires_grad_(True)
    scale, bias = g["scale"].clone().requires_grad_(True), g["bias"].clone().requires_grad_(True)
    local_targets = targets(owner, ids, images, by_cui)
    loss = loss_fn(patches, concept_features, local_targets, scale, bias, concept_ids=ids if by_cui else None)
    grads = torch.autograd.grad(loss, [patches, concept_features, scale, bias])
    names = ("grad_patches", "grad_concepts", "grad_scale", "grad_bias")
    return {"loss": loss.detach(), **dict(zip(names, grads))}


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        results = {name: run_case(name, rank, world_size) for name in CASES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
