"""Distributed exactness of the contrastive losses: 2 CPU processes (gloo) each hold half of a global
batch, and their per-rank losses and gradients must recombine into the single-process ones.

The exact identity (documented in vlzoo.core.losses.contrastive): every per-rank loss is a mean over
its b local rows, so with W ranks, ``sum_r L_r = W * L`` where L is the loss of one process on the
global batch. With ``gather_with_grad=True`` the gathers/exchanges route every gradient term back to
the rank owning the features, hence

* per-rank gradient w.r.t. its own features == W * (single-process gradient of that slice),
* sum over ranks of the gradient w.r.t. the replicated logit_scale / logit_bias == W * its gradient,

i.e. the sum of per-rank gradients is the gradient of ``W * L``; equivalently DDP's *mean* over
ranks is exactly the single-process gradient of ``L``. The tests assert that, scaled by W.
"""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import losses_dist_worker

pytestmark = pytest.mark.distributed

TOL = {"rtol": 1e-5, "atol": 1e-7}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_method() -> str:
    # A forkserver imports torch once and forks clean children from it, where "spawn" re-imports
    # torch in every child (several seconds each on a busy 2-core machine). The children are forked
    # from the server, never from this process, so the usual fork-after-threads hazards do not apply.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload(["torch", "vlzoo.core.losses"])
    return "forkserver"


def _run(world_size: int, tmp_path: Path) -> list[dict]:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.start_processes(
        losses_dist_worker.worker,
        args=(world_size, _free_port(), str(tmp_path)),
        nprocs=world_size,
        join=True,
        start_method=_start_method(),
    )
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def _assert_recombines(per_rank: list[dict], world_size: int, names: list[str]) -> None:
    reference = losses_dist_worker.single_process_results(world_size)
    for name in names:
        want, got = reference[name], [rank[name] for rank in per_rank]
        W = world_size
        torch.testing.assert_close(sum(g["loss"] for g in got), W * want["loss"], **TOL, msg=f"{name}: loss")
        for key, expected in want.items():
            if not key.startswith("grad_"):
                continue
            # A replicated parameter: per-rank gradients add up; a feature tensor: each rank holds
            # the gradient of its own slice.
            replicated = expected.dim() == 0
            combined = sum(g[key] for g in got) if replicated else torch.cat([g[key] for g in got])
            torch.testing.assert_close(combined, W * expected, **TOL, msg=f"{name}: {key}")


def test_two_ranks_recombine_to_the_global_batch(tmp_path: Path) -> None:
    """ClipLoss, ChunkedClipLoss, SigLipLoss (every dist_impl), FilipLoss and MultiPositiveClipLoss,
    one spawn of 2 processes for all of them."""
    per_rank = _run(2, tmp_path)
    names = [name for name in per_rank[0] if name != "helpers"]
    assert {
        "clip_local",
        "chunked_local",
        "chunked_global_smoothing",
        "chunked_local_smoothing",
        "chunked_siglip_bidir",
        "filip_local",
        "siglip_gather",
        "siglip_shift",
        "siglip_bidir",
    } <= set(names)
    _assert_recombines(per_rank, 2, names)

    # all_gather_features(with_grad=False): values of every rank, but only our own slot has a graph.
    for rank, result in enumerate(per_rank):
        helpers = result["helpers"]
        torch.testing.assert_close(
            helpers["gathered"], torch.tensor([1.0, 1, 2, 2], dtype=torch.float64)[:, None].expand(4, 3)
        )
        row_weights = torch.tensor([2 * rank + 1.0, 2 * rank + 2.0], dtype=torch.float64)
        torch.testing.assert_close(helpers["grad"], row_weights[:, None].expand(2, 3))


def test_three_ranks_siglip_bidirectional_exchange(tmp_path: Path) -> None:
    """With 2 ranks 'bidir' degenerates to a single one-way hop; 3 ranks exercise the two-way swap."""
    per_rank = _run(3, tmp_path)
    _assert_recombines(
        per_rank, 3, ["siglip_bidir", "siglip_shift", "siglip_gather", "clip_local", "chunked_siglip_bidir"]
    )
