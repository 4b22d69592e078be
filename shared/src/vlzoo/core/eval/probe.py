"""Linear probe: multinomial logistic regression on frozen features, in torch, with L-BFGS.

The protocol follows CLIP's: full-batch L-BFGS on an L2-regularized softmax regression, the
regularization strength swept on a held-out part of the training features, then a refit on all of them
with the chosen value and one evaluation on the test features.

Features are standardized (train mean and standard deviation per dimension) by default. Two reasons: the
objective is better conditioned, so L-BFGS converges in fewer iterations; and one weight-decay grid means
the same thing for every model, whereas unit-normalized features of width D have per-dimension scales of
about 1/sqrt(D) that differ between backbones and would shift the useful range of the penalty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval.zeroshot import classification_metrics

__all__ = ["DEFAULT_WEIGHT_DECAYS", "LogisticRegression", "fit_logistic_regression", "linear_probe"]

# 1e-6 ... 1e-1, one value per decade.
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class LogisticRegression:
    """A fitted probe: standardization statistics, weight ``[D, C]`` and bias ``[C]``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        self.mean, self.std, self.weight, self.bias = mean, std, weight, bias

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.to(self.weight.dtype) - self.mean) / self.std
        return x @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(dim=1)


def _standardization(features: torch.Tensor, standardize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not standardize:
        return torch.zeros_like(features[0]), torch.ones_like(features[0])
    mean = features.mean(dim=0)
    # A constant dimension carries no information: divide by 1 rather than 0.
    std = features.std(dim=0, unbiased=False)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    standardize: bool = True,
    max_iter: int = 1000,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LogisticRegression:
    """Minimizes ``mean cross-entropy + weight_decay / 2 · ||W||²`` (bias not penalized) with L-BFGS.

    ``init`` = ``(weight, bias)`` warm-starts the solver; the objective is strictly convex for
    ``weight_decay > 0``, so the optimum doesn't depend on it, only the number of iterations.
    """
    # Callers often hold features made under torch.inference_mode() (encode_images does), and may call
    # this inside it: autograd needs a normal mode and normal tensors, so copy everything out of it.
    with torch.inference_mode(False), torch.enable_grad():
        x = features.to(torch.float64, copy=True)  # float64: the penalty may be 1e-6 of the loss
        labels = labels.to(torch.long, copy=True)
        if init is not None:
            init = (init[0].clone(), init[1].clone())
        return _lbfgs_fit(x, labels, num_classes, weight_decay, standardize, max_iter, init)


def _lbfgs_fit(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    standardize: bool,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None,
) -> LogisticRegression:
    mean, std = _standardization(x, standardize)
    x = (x - mean) / std
    dim = x.shape[1]
    weight = torch.zeros(dim, num_classes, dtype=x.dtype) if init is None else init[0]
    bias = torch.zeros(num_classes, dtype=x.dtype) if init is None else init[1]
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, labels) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LogisticRegression(mean, std, weight.detach(), bias.detach())


def _stratified_split(
    labels: torch.Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation indices with each class split in the same proportion.

    A plain random split can leave a rare class out of the training part entirely; a class with a single
    example stays in training.
    """
    train_parts, val_parts = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_val = round(val_fraction * members.numel()) if members.numel() > 1 else 0
        n_val = min(max(n_val, 1 if members.numel() > 1 else 0), members.numel() - 1)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def _check_probe_inputs(features: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    if features.ndim != 2 or not features.is_floating_point():
        raise DataError(
            f"{name}_features must be a floating-point tensor [N, D], got {tuple(features.shape)}"
        )
    if not torch.isfinite(features).all():
        raise DataError(f"{name}_features {tuple(features.shape)} holds NaN or infinite values")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != features.shape[0] or labels.is_floating_point():
        raise DataError(
            f"{name}_labels must be an integer tensor [{features.shape[0]}], got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise DataError(f"{name}_labels must be non-empty and non-negative")
    return labels.long().cpu()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    standardize: bool = True,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Sweeps ``weight_decays`` on a stratified held-out split, refits on all train features, tests.

    Returns percent ``accuracy`` and ``balanced_accuracy`` on the test set, ``best_weight_decay`` and
    ``validation_accuracy`` (``{weight_decay: percent}``). Among equally accurate values the largest
    weight decay wins: the most regularized of equally good probes. The sweep runs from the largest
    value down, each fit warm-started from the previous one (the objective is convex, so only speed
    changes). Runs on CPU in float64.
    """
    train_labels = _check_probe_inputs(train_features, train_labels, "train")
    test_labels = _check_probe_inputs(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise DataError(
            f"train_features {tuple(train_features.shape)} and test_features {tuple(test_features.shape)} "
            "have different widths"
        )
    decays = sorted({float(w) for w in weight_decays}, reverse=True)
    if not decays or min(decays) <= 0:
        raise ConfigError(f"weight_decays must be positive numbers, got {weight_decays!r}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train_x, test_x = train_features.detach().cpu(), test_features.detach().cpu()

    train_idx, val_idx = _stratified_split(train_labels, val_fraction, torch.Generator().manual_seed(seed))
    if val_idx.numel() == 0:
        raise DataError("too few training examples to hold out a validation split (every class has one)")
    val_accuracy: dict[float, float] = {}
    init = None
    for decay in decays:
        probe = fit_logistic_regression(
            train_x[train_idx], train_labels[train_idx], num_classes, decay, standardize, max_iter, init
        )
        init = (probe.weight, probe.bias)
        predictions = probe.predict(train_x[val_idx])
        val_accuracy[decay] = (
            100.0 * torch.count_nonzero(predictions == train_labels[val_idx]).item() / len(val_idx)
        )
    best = max(decays, key=lambda w: (val_accuracy[w], w))

    probe = fit_logistic_regression(train_x, train_labels, num_classes, best, standardize, max_iter)
    test = classification_metrics(probe.predict(test_x), test_labels, num_classes)
    return {
        "accuracy": test["accuracy"],
        "balanced_accuracy": test["balanced_accuracy"],
        "best_weight_decay": best,
        "validation_accuracy": dict(sorted(val_accuracy.items())),
    }
