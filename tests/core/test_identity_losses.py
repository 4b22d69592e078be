"""CMPM and CMPC (`vlzoo.core.losses`) equal their formulas, written out here term by term, and CMPM computed
by 2 gloo processes on halves of a batch recombines into the single-process loss and gradients."""

from __future__ import annotations

import math
import multiprocessing
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import identity_losses_dist_worker

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import LOSSES, CMPCLoss, CMPMLoss, build_loss

F64 = torch.float64


def cmpm_by_hand(image, text, ids, eps=1e-8, norm="l2"):
    """Zhang & Lu's CMPM, loops over rows and columns:
    p_ij = exp(x_i·z̄_j) / Σ_k exp(x_i·z̄_k), q_ij = y_ij / ‖y_i‖₂ (or / Σ_k y_ik),
    L_i2t = 1/B Σ_i Σ_j p_ij (log p_ij − log(q_ij + ε)); the same with images and texts swapped; sum."""
    b = len(ids)

    def direction(rows, cols):
        total = 0.0
        for i in range(b):
            logits = [float(rows[i] @ (cols[j] / cols[j].norm())) for j in range(b)]
            z = sum(math.exp(v) for v in logits)
            y = [1.0 if ids[i] == ids[j] else 0.0 for j in range(b)]
            denom = math.sqrt(sum(v * v for v in y)) if norm == "l2" else sum(y)
            for j in range(b):
                p = math.exp(logits[j]) / z
                total += p * (math.log(p) - math.log(y[j] / denom + eps))
        return total / b

    return direction(image, text) + direction(text, image)


def cmpc_by_hand(image, text, ids, weight):
    """CMPC: x̂_i = (x_i·z̄_i) z̄_i, ẑ_i = (z_i·x̄_i) x̄_i, W̄ = W with unit columns,
    L = 1/B Σ_i −log softmax(x̂_i W̄)[id_i] + 1/B Σ_i −log softmax(ẑ_i W̄)[id_i]."""
    w_bar = weight / weight.norm(dim=0, keepdim=True)
    total = 0.0
    for i in range(len(ids)):
        z_dir, x_dir = text[i] / text[i].norm(), image[i] / image[i].norm()
        for projected in (float(image[i] @ z_dir) * z_dir, float(text[i] @ x_dir) * x_dir):
            logits = [float(projected @ w_bar[:, c]) for c in range(w_bar.shape[1])]
            total -= logits[ids[i]] - math.log(sum(math.exp(v) for v in logits))
    return total / len(ids)


def batch(seed=0, n=6, dim=5):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen, dtype=F64), torch.randn(n, dim, generator=gen, dtype=F64)


@pytest.mark.parametrize("norm", ["l2", "sum"])
def test_cmpm_equals_its_formula(norm):
    image, text = batch()
    ids = [0, 1, 0, 2, 1, 0]  # identities with 1, 2 and 3 pairs
    got = CMPMLoss(label_norm=norm)(image, text, torch.tensor(ids))
    assert float(got) == pytest.approx(cmpm_by_hand(image, text, ids, norm=norm), rel=1e-10)


def test_cmpm_l2_and_sum_differ_only_with_shared_identities():
    image, text = batch(1)
    unique = torch.arange(6)
    assert float(CMPMLoss(label_norm="l2")(image, text, unique)) == pytest.approx(
        float(CMPMLoss(label_norm="sum")(image, text, unique))
    )
    shared = torch.tensor([0, 0, 1, 1, 2, 2])
    assert float(CMPMLoss(label_norm="l2")(image, text, shared)) != pytest.approx(
        float(CMPMLoss(label_norm="sum")(image, text, shared))
    )


def test_cmpm_rewards_matching_identities():
    """Features that agree within an identity score a lower CMPM than the same features with ids shuffled."""
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(3, 8, generator=gen, dtype=F64) * 3
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    image = centres[ids] + 0.1 * torch.randn(6, 8, generator=gen, dtype=F64)
    text = centres[ids] + 0.1 * torch.randn(6, 8, generator=gen, dtype=F64)
    loss_fn = CMPMLoss()
    assert float(loss_fn(image, text, ids)) < 0.5 * float(
        loss_fn(image, text, torch.tensor([0, 1, 2, 0, 1, 2]))
    )


def test_cmpc_equals_its_formula():
    image, text = batch(2)
    ids = [0, 3, 1, 3, 2, 0]
    loss_fn = CMPCLoss(feature_dim=5, num_classes=4).double()
    got = loss_fn(image, text, torch.tensor(ids))
    assert float(got.detach()) == pytest.approx(
        cmpc_by_hand(image, text, ids, loss_fn.weight.detach()), rel=1e-10
    )
    # its class weights are trained: the loss has a gradient for them
    got.backward()
    assert loss_fn.weight.grad is not None and float(loss_fn.weight.grad.abs().sum()) > 0


def test_registered_and_built_by_name():
    assert LOSSES["cmpm"] is CMPMLoss and LOSSES["cmpc"] is CMPCLoss
    assert build_loss("cmpc", feature_dim=4, num_classes=3).weight.shape == (4, 3)


def test_bad_arguments():
    image, text = batch()
    with pytest.raises(ConfigError, match="ids must be an integer tensor of shape \\(6,\\)"):
        CMPMLoss()(image, text, torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="ids must lie in \\[0, 3\\)"):
        CMPCLoss(5, 3).double()(image, text, torch.tensor([0, 1, 2, 3, 0, 1]))
    with pytest.raises(ConfigError, match="built for 4-d features"):
        CMPCLoss(4, 3).double()(image, text, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ConfigError, match="label_norm"):
        CMPMLoss(label_norm="max")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
def test_cmpm_two_ranks_recombine(tmp_path: Path):
    """Each rank's CMPM is the mean over its own rows against every gathered column, so the two ranks' losses
    sum to 2 × the global loss and each rank's gradient of its own features is 2 × the global one's slice."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        multiprocessing.get_context("forkserver").set_forkserver_preload(["torch", "vlzoo.core.losses"])
    mp.start_processes(
        identity_losses_dist_worker.worker,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method=method,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    want = identity_losses_dist_worker.run(identity_losses_dist_worker.global_inputs(2), None, 1)
    torch.testing.assert_close(ranks[0]["loss"] + ranks[1]["loss"], 2 * want["loss"])
    for key in ("grad_image", "grad_text"):
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]), 2 * want[key])
