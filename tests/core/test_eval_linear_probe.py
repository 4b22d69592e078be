"""Linear probe: separable blobs are learned, random labels are not, the solver reaches the optimum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import DEFAULT_WEIGHT_DECAYS, fit_logistic_regression, linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(100)) * 3
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    features = centers[labels] + spread * torch.randn(labels.numel(), dim, generator=gen)
    perm = torch.randperm(labels.numel(), generator=gen)
    return features[perm], labels[perm]


def test_separable_blobs_reach_95_percent():
    train_x, train_y = blobs(80, 5, 16, spread=1.0, seed=0)
    test_x, test_y = blobs(40, 5, 16, spread=1.0, seed=1)
    result = linear_probe(F.normalize(train_x, dim=-1), train_y, F.normalize(test_x, dim=-1), test_y)
    assert result["accuracy"] >= 95
    assert result["balanced_accuracy"] >= 95
    assert result["best_weight_decay"] in DEFAULT_WEIGHT_DECAYS
    assert sorted(result["validation_accuracy"]) == sorted(DEFAULT_WEIGHT_DECAYS)


def test_random_labels_stay_at_chance():
    gen = torch.Generator().manual_seed(2)
    train_x, test_x = torch.randn(400, 32, generator=gen), torch.randn(400, 32, generator=gen)
    train_y, test_y = torch.randint(0, 4, (400,), generator=gen), torch.randint(0, 4, (400,), generator=gen)
    decays = (1e-4, 1e-2, 1.0)
    result = linear_probe(train_x, train_y, test_x, test_y, weight_decays=decays)
    # Chance is 25%; a test set of 400 has a standard deviation of ~2.2 points.
    assert 15 <= result["accuracy"] <= 35
    assert result["best_weight_decay"] in decays


@pytest.mark.parametrize("standardize", [True, False])
def test_solver_reaches_the_regularized_optimum(standardize):
    # First-order optimality of the strictly convex objective: its gradient vanishes at the solution.
    x, y = blobs(30, 3, 8, spread=2.0, seed=3)
    decay = 1e-2
    probe = fit_logistic_regression(x, y, 3, decay, standardize=standardize)
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    z = (x.double() - probe.mean) / probe.std
    loss = F.cross_entropy(z @ w + b, y) + 0.5 * decay * w.pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-6
    assert b.grad.abs().max() < 1e-6
    if standardize:
        torch.testing.assert_close(z.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(8, dtype=torch.float64))


def test_selection_prefers_the_largest_of_equally_accurate_decays():
    # Well-separated blobs: every decay in the sweep classifies the validation split perfectly.
    train_x, train_y = blobs(30, 3, 4, spread=0.1, seed=4)
    result = linear_probe(train_x, train_y, train_x, train_y, weight_decays=(1e-5, 1e-3, 1e-1))
    assert set(result["validation_accuracy"].values()) == {100.0}
    assert result["best_weight_decay"] == 1e-1


def test_bad_sweep_is_rejected():
    x, y = blobs(5, 2, 3, spread=1.0, seed=5)
    with pytest.raises(ConfigError):
        linear_probe(x, y, x, y, weight_decays=())
    with pytest.raises(ConfigError):
        linear_probe(x, y, x, y, weight_decays=(0.0,))


def test_runs_on_inference_tensors_inside_inference_mode():
    # encode_images returns features made under inference_mode; callers may also be inside it.
    x, y = blobs(20, 2, 4, spread=0.5, seed=6)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        result = linear_probe(xi, yi, xi, yi, weight_decays=(1e-3,))
    assert result["accuracy"] >= 95
