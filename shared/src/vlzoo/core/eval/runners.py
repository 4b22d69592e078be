"""Evaluate a model on files: image-text retrieval, zero-shot and linear-probe classification.

Every runner, here and in the domains, has one keyword signature, which is what `vlzoo eval <task>` calls:

    run(model, *, data, pretrained=None, split="test", batch_size=..., workers=2, out=None,
        data_kind=None, data_dir=None, **task_options) -> metrics

`model` is a registered name or a module from `create_model` (which names its preprocessing); `data` a
file, a folder or a generated dataset's name (written under `data_dir` on first use); with `out` the
report (JSON and plots) is written there, else the table is printed. The helpers below are the glue the
domains' runners share: `load_eval_model`, `eval_loader`, `GalleryImages`. A runner is decorated with
`@evaluation_runner` and reads its data through `eval_loader`: its skipped samples are then counted,
reported with examples, and stop it above `max_skip_rate` (`vlzoo.core.eval.skips`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vlzoo.core.data import (
    ImageFolderClasses,
    ImageTextCollator,
    build_source,
    ensure_generated,
    generated_datasets,
    infer_data_kind,
)
from vlzoo.core.errors import ConfigError
from vlzoo.core.eval.features import EncodedRetrievalSet, encode_images, encode_retrieval_set
from vlzoo.core.eval.probe import linear_probe
from vlzoo.core.eval.report import report_metrics
from vlzoo.core.eval.skips import active_skips, evaluation_runner
from vlzoo.core.eval.zeroshot import SIMPLE_TEMPLATES, zeroshot_classifier, zeroshot_metrics
from vlzoo.core.registry import create_model, get_tokenizer, get_transforms

__all__ = [
    "GalleryImages",
    "SkipCountingLoader",
    "eval_loader",
    "evaluate_linear_probe",
    "evaluate_retrieval",
    "evaluate_zeroshot",
    "load_eval_model",
    "resolve_eval_data",
]


def load_eval_model(model: str | nn.Module, pretrained: str | None = None) -> tuple[nn.Module, str]:
    """(the network in eval mode, the registered name whose preprocessing and tokenizer it uses) of a
    registered name (built with `pretrained`) or of a module `create_model` built."""
    if not isinstance(model, nn.Module):
        return create_model(model, pretrained=pretrained).eval(), model
    name = getattr(model, "vlzoo_name", None)
    if name is None:
        raise ConfigError("a model object must come from vlzoo.create_model (it names its preprocessing)")
    if pretrained is not None:
        raise ConfigError(f"pretrained={pretrained!r} given with a built {name} model: load weights by name")
    return model.eval(), name


def eval_loader(
    model: str | nn.Module,
    dataset: Dataset,
    batch_size: int = 128,
    workers: int = 0,
    captions: bool = True,
    count_skips: bool = True,
) -> DataLoader:
    """Batches with the model's evaluation preprocessing and, with `captions`, every caption tokenized. Give
    the loaded model (or a registered name for its defaults): its own config, saved with its weights, says
    how its inputs were prepared. Its skipped samples count into the evaluation's tally unless
    `count_skips` is False (a batch re-read for a plot)."""
    transform = get_transforms(model, train=False)
    tokenizer = get_tokenizer(model) if captions else None
    collate = ImageTextCollator(transform, tokenizer, captions="all")
    loader = SkipCountingLoader if count_skips else DataLoader
    return loader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)


class SkipCountingLoader(DataLoader):
    """A DataLoader that counts its batches' skipped samples into the evaluation's `SkipLedger` (see
    `vlzoo.core.eval.skips`) and, read to the end, stops the evaluation when too many were skipped: every
    runner reads through `eval_loader`, so no task reports metrics over a silently smaller set."""

    def __iter__(self):
        skips = active_skips()
        for batch in super().__iter__():
            if skips is not None:
                skips.count(batch)
            yield batch
        if skips is not None:
            skips.check()


class GalleryImages(Sequence):
    """A source's images for the report plots, decoded only when a plot shows one. With `display` (a
    function of an image path, e.g. a GeoTIFF's RGB composite), the images are read from the source's
    records' paths instead of its samples."""

    def __init__(self, source: Dataset, display: Callable[[str], Any] | None = None):
        self.source = source
        self.display = display
        records = getattr(source, "records", None) if display is not None else None
        self.paths = [str(r.image_path) for r in records] if records else []

    @classmethod
    def of(
        cls, source: Dataset, encoded: EncodedRetrievalSet, display: Callable[[str], Any] | None = None
    ) -> GalleryImages | None:
        """The gallery of an encoded set, or None when plots cannot show it: they index images by their
        position among the encoded ones, which only holds when no sample was skipped."""
        gallery = cls(source, display)
        complete = encoded.skipped == 0 and len(gallery) == encoded.image_features.shape[0]
        return gallery if complete else None

    def __len__(self) -> int:
        return len(self.paths) if self.paths else len(self.source)

    def __getitem__(self, index: int):
        if (
            not -len(self) <= index < len(self)
        ):  # iteration stops at an IndexError, which a source needn't raise
            raise IndexError(f"gallery index {index} out of range for {len(self)} images")
        return self.display(self.paths[index]) if self.paths else self.source[index]["image"]


def resolve_eval_data(
    data: str, data_dir: str | Path | None = None, generate: Mapping[str, Any] | None = None
) -> str:
    """`data` itself, or for a generated dataset's name the file written (with the writer's `generate`
    options) under `data_dir`, default `data/<name>`, on first use."""
    if data not in generated_datasets():
        return data
    return str(ensure_generated(data, data_dir or Path("data") / data, generate))


def _class_folder(data: str, split: str, data_kind: str | None, data_dir) -> ImageFolderClasses:
    """`root/<class>/<image>`, or `root/<split>/<class>/<image>` when `root/<split>` exists."""
    if data_kind not in (None, "folder"):
        raise ConfigError(f"classification reads a class folder (root/<class>/<image>), not {data_kind!r}")
    root = Path(resolve_eval_data(data, data_dir))
    return ImageFolderClasses(root / split if (root / split).is_dir() else root)


@evaluation_runner
@torch.inference_mode()
def evaluate_retrieval(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Image↔text retrieval on a Karpathy split (all captions per image), a CSV/JSONL of pairs, or data of
    any registered kind (`data_kind`, else from the file's suffix). The metrics are `retrieval_metrics`'
    plus the counts of images, captions and skipped samples."""
    path = resolve_eval_data(data, data_dir)
    source = build_source(path, data_kind or infer_data_kind(path), split, "all", {"train": False})
    net, name = load_eval_model(model, pretrained)
    encoded = encode_retrieval_set(net, eval_loader(net, source, batch_size, workers))
    metrics = encoded.metrics()
    plots = {**encoded.plots(), "images": GalleryImages.of(source, encoded)}
    report_metrics(metrics, f"{name} retrieval on {data} ({split})", out, **plots)
    return metrics


@evaluation_runner
@torch.inference_mode()
def evaluate_zeroshot(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Zero-shot classification of an image folder (`root/<class>/<image>`, or its `split` subfolder)
    with prompt `templates` (default `SIMPLE_TEMPLATES`)."""
    dataset = _class_folder(data, split, data_kind, data_dir)
    net, name = load_eval_model(model, pretrained)
    classifier = zeroshot_classifier(
        net, get_tokenizer(net), dataset.class_names, list(templates or SIMPLE_TEMPLATES)
    )
    encoded = encode_images(net, eval_loader(net, dataset, batch_size, workers, captions=False))
    metrics = zeroshot_metrics(encoded.features, classifier, encoded.labels, classnames=dataset.class_names)
    report_metrics(metrics, f"{name} zero-shot on {data}", out)
    return metrics


@evaluation_runner
@torch.inference_mode()
def evaluate_linear_probe(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    train_data: str | None = None,
) -> dict[str, Any]:
    """Logistic regression on frozen image features: trained on `train_data`, tested on `data` (class
    folders, as for `evaluate_zeroshot`)."""
    if train_data is None:
        raise ConfigError("linear-probe needs train_data (--train-data): the class folder to train on")
    net, name = load_eval_model(model, pretrained)
    train, test = (
        encode_images(
            net,
            eval_loader(net, _class_folder(d, s, data_kind, data_dir), batch_size, workers, captions=False),
        )
        for d, s in ((train_data, "train"), (data, split))
    )
    with torch.inference_mode(False):  # the probe itself is trained
        metrics = linear_probe(
            train.features.clone(), train.labels.clone(), test.features.clone(), test.labels.clone()
        )
    report_metrics(metrics, f"{name} linear probe on {data}", out)
    return metrics
