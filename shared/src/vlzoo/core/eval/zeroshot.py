"""Zero-shot classification: class prototypes from prompt templates, then accuracy metrics.

As in CLIP, each class is represented by the mean of its normalized template embeddings ("a photo of a
{}.", "a bad photo of the {}.", ...), renormalized, so that no single phrasing dominates and a class with
more templates isn't favoured. Domain packages pass their own class names and templates ("an aerial
photograph of {}.", "a chest X-ray showing {}.").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval.features import encode_texts

__all__ = [
    "OPENAI_IMAGENET_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "Template",
    "classification_metrics",
    "per_class_recall",
    "zeroshot_classifier",
    "zeroshot_metrics",
]

Template = str | Callable[[str], str]

SIMPLE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

# A short subset of OpenAI's 80 ImageNet prompts: the 7 suggested by CLIP's prompt-engineering notebook
# (the subset open_clip calls SIMPLE_IMAGENET_TEMPLATES). Each "{}" is replaced by a class name.
OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def _fill(template: Template, classname: str) -> str:
    return template.format(classname) if isinstance(template, str) else template(classname)


@torch.inference_mode()
def zeroshot_classifier(
    model,
    tokenizer: Callable[[list[str]], object],
    classnames: Sequence[str],
    templates: Sequence[Template] = SIMPLE_TEMPLATES,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``Tensor[D, C]``: per class, the renormalized mean of its normalized template embeddings.

    Texts of all (class, template) pairs are encoded ``batch_size`` at a time, whatever the number of
    templates per class, so memory doesn't grow with the template set. ``image_features @ classifier``
    gives the logits. The model is put in eval mode for the call and restored after; the result is
    float32 on the CPU.
    """
    if isinstance(classnames, str) or not classnames:
        raise ConfigError(f"classnames must be a non-empty sequence of strings, got {classnames!r}")
    if isinstance(templates, str) or not templates:
        raise ConfigError(
            f"templates must be a non-empty sequence of strings or callables, got {templates!r}"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    texts = [_fill(t, c) for c in classnames for t in templates]  # class-major: reshape(C, T, D) below
    embeddings = encode_texts(model, tokenizer, texts, batch_size=batch_size, device=device)
    # encode_texts normalizes each template embedding: the mean is one of unit vectors, as in CLIP.
    embeddings = embeddings.reshape(len(classnames), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=-1).T.contiguous()


def _check_metric_inputs(
    image_features: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    if image_features.ndim != 2 or classifier.ndim != 2 or image_features.shape[1] != classifier.shape[0]:
        raise DataError(
            f"image_features [N, D] and classifier [D, C] don't fit: {tuple(image_features.shape)} and "
            f"{tuple(classifier.shape)}"
        )
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != image_features.shape[0] or labels.is_floating_point():
        raise DataError(
            f"labels must be an integer tensor [N] = [{image_features.shape[0]}], got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    n_classes = classifier.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise DataError(
            f"labels must lie in [0, {n_classes}) for a classifier of {n_classes} classes; got min "
            f"{int(labels.min())}, max {int(labels.max())}"
        )
    if labels.numel() == 0:
        raise DataError("no images to evaluate: image_features has 0 rows")
    return labels.to(image_features.device, torch.long)


def per_class_recall(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Percent correct per class (``NaN`` for a class absent from ``labels``)."""
    support = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    return torch.where(
        support > 0, 100.0 * hits / support.clamp(min=1), torch.full_like(support, float("nan"))
    )


def classification_metrics(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int, classnames: Sequence[str] | None = None
) -> dict[str, object]:
    """Accuracy, balanced accuracy and per-class accuracy (percent) from top-1 predictions.

    Balanced accuracy is the mean recall over the classes present in ``labels`` (as scikit-learn's
    ``balanced_accuracy_score``): a class with no test images has no recall to average.
    """
    recalls = per_class_recall(predictions, labels, num_classes)
    present = ~torch.isnan(recalls)
    names = list(classnames) if classnames is not None else list(range(num_classes))
    return {
        "accuracy": 100.0 * torch.count_nonzero(predictions == labels).item() / labels.numel(),
        "balanced_accuracy": recalls[present].mean().item(),
        "per_class_accuracy": {
            names[c]: recalls[c].item() for c in torch.nonzero(present).flatten().tolist()
        },
    }


@torch.inference_mode()
def zeroshot_metrics(
    image_features: torch.Tensor,
    classifier: torch.Tensor,
    labels: torch.Tensor,
    k: Sequence[int] = (1, 5),
    classnames: Sequence[str] | None = None,
    chunk_size: int = 8192,
) -> dict[str, object]:
    """Top-k accuracies, balanced accuracy and per-class accuracy, in percent.

    Keys: ``top{k}_accuracy`` for each k (a k at or above the number of classes counts every image as a
    hit), ``balanced_accuracy`` (mean per-class top-1 recall), ``per_class_accuracy`` (top-1 recall keyed
    by class name, or class index without ``classnames``; only classes present in ``labels``). Logits are
    computed ``chunk_size`` images at a time so that large test sets with many classes fit.
    """
    labels = _check_metric_inputs(image_features, classifier, labels)
    ks = tuple(int(x) for x in k)
    if not ks or min(ks) < 1:
        raise ConfigError(f"k must be positive integers, got {k!r}")
    n_classes = classifier.shape[1]
    if classnames is not None and len(classnames) != n_classes:
        raise ConfigError(f"{len(classnames)} classnames for a classifier of {n_classes} classes")
    classifier = classifier.to(image_features.device, image_features.dtype)
    max_k = min(max(ks), n_classes)
    topk_parts = [
        (image_features[i : i + chunk_size] @ classifier).topk(max_k, dim=1).indices
        for i in range(0, image_features.shape[0], chunk_size)
    ]
    topk = torch.cat(topk_parts)
    hits = topk == labels.unsqueeze(1)  # [N, max_k]: at most one True per row
    metrics: dict[str, object] = {
        f"top{x}_accuracy": 100.0 * torch.count_nonzero(hits[:, : min(x, n_classes)]).item() / labels.numel()
        for x in ks
    }
    top1 = classification_metrics(topk[:, 0], labels, n_classes, classnames)
    metrics["balanced_accuracy"] = top1["balanced_accuracy"]
    metrics["per_class_accuracy"] = top1["per_class_accuracy"]
    return metrics
