"""`ImageTextDataModule`: files or shards → batches, with the model's own transforms and tokenizer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vlzoo.core.data import (
    CsvPairs,
    ImageTextCollator,
    JsonlPairs,
    KarpathySplits,
    ShardSource,
    build_transform,
    write_toyworld,
)
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.registry import get_model_config, get_tokenizer

TOYWORLD = "toyworld"
DATA_KINDS = ("auto", "csv", "tsv", "jsonl", "karpathy", "webdataset", TOYWORLD)


def data_kind(path: str) -> str:
    """What a data argument names, from its suffix: `.csv`, `.tsv`, `.jsonl`, `.json` (Karpathy), `.tar`."""
    if path == TOYWORLD:
        return TOYWORLD
    name = str(path).split("::")[0]
    for suffix, kind in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "karpathy")):
        if name.endswith(suffix):
            return kind
    if ".tar" in name:
        return "webdataset"
    raise ConfigError(f"cannot tell the format of data {path!r}: give data_kind (one of {DATA_KINDS[1:]})")


class ImageTextDataModule(L.LightningDataModule):
    """Image-text pairs for training and retrieval evaluation.

    Args:
        data: a CSV/TSV/JSONL of pairs, a Karpathy split JSON, webdataset shards (`shards-{000..009}.tar`),
            or `"toyworld"` (generated under `data_dir` on first use).
        val_data, test_data: the same kinds; a Karpathy JSON (and toyworld) defaults to its own
            `val_split` / `test_split`.
        model, model_overrides: whose preprocessing and tokenizer to use (linked from the model by the CLI).
        img_key, caption_key: columns of CSV/TSV/JSONL.
        captions: training caption per image with several: `"random"` each epoch, or `"each"` pair.
        albumentations: augmentations (list of `{"type": ..., **params}`) before the model's normalization.
        epoch_length: samples per epoch of streamed shards: drawn with replacement when `resampled_shards`,
            else the number of training samples the shards hold. The learning-rate schedule needs it
            (or `trainer.max_steps`), since a stream has no length of its own.
        toyworld: arguments of `write_toyworld` (n_train, n_val, n_test, image_size, seed).
    """

    def __init__(
        self,
        data: str = TOYWORLD,
        val_data: str | None = None,
        test_data: str | None = None,
        data_kind: str = "auto",
        model: str = "clip-vit-tiny",
        model_overrides: dict[str, Any] | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        img_key: str = "filepath",
        caption_key: str = "title",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        captions: str = "random",
        albumentations: list[dict[str, Any]] | None = None,
        shuffle_buffer: int = 1000,
        resampled_shards: bool = False,
        epoch_length: int | None = None,
        data_dir: str = "data/toyworld",
        toyworld: dict[str, Any] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if data_kind not in DATA_KINDS:
            raise ConfigError(f"data.data_kind must be one of {DATA_KINDS}, got {data_kind!r}")
        if captions not in ("random", "each"):
            raise ConfigError(f"data.captions must be 'random' or 'each', got {captions!r}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        self.save_hyperparameters()
        self._datasets: dict[str, Dataset] = {}

    # ----------------------------------------------------------------------------------- sources
    def _resolve(self, data: str) -> tuple[str, str]:
        hp = self.hparams
        kind = hp.data_kind if hp.data_kind != "auto" and data == hp.data else data_kind(data)
        if kind == TOYWORLD:
            return str(Path(hp.data_dir) / "toyworld.json"), "karpathy"
        return data, kind

    def prepare_data(self) -> None:
        if TOYWORLD in (self.hparams.data, self.hparams.val_data, self.hparams.test_data):
            json_path = Path(self.hparams.data_dir) / "toyworld.json"
            if not json_path.is_file():
                write_toyworld(self.hparams.data_dir, **(self.hparams.toyworld or {}))

    def _source(self, data: str, split: str, train: bool) -> Dataset:
        hp = self.hparams
        path, kind = self._resolve(data)
        mode = hp.captions if train else "all"
        if kind in ("csv", "tsv"):
            return CsvPairs(
                path, img_key=hp.img_key, caption_key=hp.caption_key, sep="\t" if kind == "tsv" else ","
            )
        if kind == "jsonl":
            return JsonlPairs(path, img_key=hp.img_key, caption_key=hp.caption_key)
        if kind == "karpathy":
            return KarpathySplits(path, split=split, captions=mode)
        return ShardSource(
            path,
            shuffle_buffer=hp.shuffle_buffer if train else 0,
            resampled=hp.resampled_shards and train,
            epoch_length=hp.epoch_length,
            num_samples=hp.epoch_length if train else None,
            seed=hp.seed,
        )

    def _eval_data(self, given: str | None) -> str | None:
        if given is not None:
            return given
        _, kind = self._resolve(self.hparams.data)
        return self.hparams.data if kind == "karpathy" else None

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            self._datasets["train"] = self._source(hp.data, hp.train_split, train=True)
        if stage in ("fit", "validate") and (val := self._eval_data(hp.val_data)) is not None:
            self._datasets["val"] = self._source(val, hp.val_split, train=False)
        if stage == "test":
            test = self._eval_data(hp.test_data)
            if test is None:
                raise DataError(f"no test data: give data.test_data (training data is {hp.data})")
            self._datasets["test"] = self._source(test, hp.test_split, train=False)

    # ------------------------------------------------------------------------------------ loaders
    def _collator(self, train: bool) -> ImageTextCollator:
        hp = self.hparams
        overrides = hp.model_overrides or {}
        vision = get_model_config(hp.model, **overrides).vision
        transform = build_transform(vision, train=train, albumentations=hp.albumentations if train else None)
        captions = ("random" if hp.captions == "random" else "first") if train else "all"
        return ImageTextCollator(
            transform, get_tokenizer(hp.model, **overrides), captions=captions, seed=hp.seed
        )

    def _loader(self, name: str, train: bool) -> DataLoader:
        if name not in self._datasets:
            raise DataError(f"no {name} data was set up")
        dataset = self._datasets[name]
        hp = self.hparams
        workers = min(hp.num_workers, os.cpu_count() or 1)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            shuffle=train and not isinstance(dataset, IterableDataset),
            num_workers=workers,
            collate_fn=self._collator(train),
            drop_last=train,  # contrastive losses want full batches (and equal ones on every rank)
            persistent_workers=workers > 0 and train,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False) if "val" in self._datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
