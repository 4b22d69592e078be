"""`ImageTextDataModule`: files or shards → batches, with the model's own transforms and tokenizer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vlzoo.core.data import GroupedBatchSampler, ImageTextCollator
from vlzoo.core.data.kinds import (
    build_source,
    check_data_options,
    check_generate_options,
    data_kinds,
    ensure_generated,
    get_data_kind,
    get_generated_dataset,
    infer_data_kind,
)
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.registry import get_tokenizer, get_transforms

TOYWORLD = "toyworld"


def data_kind(path: str) -> str:
    """What a data argument names: a generated dataset (`toyworld`, a domain's `rs-toyworld`), or a file
    format from its suffix (`.csv`, `.tsv`, `.jsonl`, `.json` = Karpathy, `.tar` shards, a domain's own)."""
    return infer_data_kind(path)


class ImageTextDataModule(L.LightningDataModule):
    """Image-text pairs for training and retrieval evaluation.

    Args:
        data: a CSV/TSV/JSONL of pairs, a Karpathy split JSON, webdataset shards (`shards-{000..009}.tar`),
            a domain's own format, or a generated dataset's name (`"toyworld"`, a domain's `"rs-toyworld"`:
            written under `data_dir` on first use).
        val_data, test_data: the same kinds; a Karpathy JSON (and a generated dataset) defaults to its own
            `val_split` / `test_split`.
        data_kind: how to read `data` when its suffix doesn't tell (`"auto"`), e.g. `"medconcept"`; the
            kinds are those of `vlzoo.core.data.kinds` plus the installed domains'.
        model, pretrained, model_overrides: whose preprocessing and tokenizer to use, resolved as
            `create_model(model, pretrained, **model_overrides)` resolves the model's config (the config saved
            with fine-tuned weights included); linked from the model by the CLI.
        img_key, caption_key: columns of CSV/TSV/JSONL (default each format's own: `filepath`/`title` for
            CSV as open_clip writes them, `image`/`text` for JSONL).
        captions: training caption per image with several: `"random"` each epoch, or `"each"` pair.
        albumentations: augmentations (list of `{"type": ..., **params}`) before the model's normalization.
        epoch_length: samples per epoch of streamed shards: drawn with replacement when `resampled_shards`,
            else the number of training samples the shards hold. The learning-rate schedule needs it
            (or `trainer.max_steps`), since a stream has no length of its own.
        data_dir: where a generated dataset is written (default `data/<its name>`).
        generate: arguments of the generated dataset's writer (for toyworld: n_train, n_val, n_test,
            image_size, seed). `toyworld` is the older name of the same argument.
        data_options: options of a domain's data kind (`image_root`, `bands`, `languages`, `section`, ...),
            passed to its reader with the arguments above.
        group_batches: training batches of P groups × K members instead of independent samples, e.g.
            `{"key": "pair", "per_group": 2}` (an image beside its distractor: hard negatives) or
            `{"key": "pid", "per_group": 4}` (identities); P = `batch_size // per_group`. `key` is a record
            field of the training data. Under DDP set `trainer.use_distributed_sampler: false`: the
            sampler splits the batches across ranks itself (`vlzoo.core.data.GroupedBatchSampler`).
    """

    def __init__(
        self,
        data: str = TOYWORLD,
        val_data: str | None = None,
        test_data: str | None = None,
        data_kind: str = "auto",
        model: str = "clip-vit-tiny",
        model_overrides: dict[str, Any] | None = None,
        pretrained: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        img_key: str | None = None,
        caption_key: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        captions: str = "random",
        albumentations: list[dict[str, Any]] | None = None,
        shuffle_buffer: int = 1000,
        resampled_shards: bool = False,
        epoch_length: int | None = None,
        data_dir: str | None = None,
        generate: dict[str, Any] | None = None,
        toyworld: dict[str, Any] | None = None,
        data_options: dict[str, Any] | None = None,
        group_batches: dict[str, Any] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if data_kind != "auto" and data_kind not in data_kinds():
            raise ConfigError(f"data.data_kind must be 'auto' or one of {data_kinds()}, got {data_kind!r}")
        if generate is not None and toyworld is not None:
            raise ConfigError("give data.generate or its older name data.toyworld, not both")
        if captions not in ("random", "each"):
            raise ConfigError(f"data.captions must be 'random' or 'each', got {captions!r}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        self.save_hyperparameters()
        self._datasets: dict[str, Dataset] = {}
        self._check_options()
        self._check_group_batches()

    def _check_options(self) -> None:
        """Dict-valued settings are checked key by key here, before any data is read or written."""
        hp = self.hparams
        given = [d for d in (hp.data, hp.val_data, hp.test_data) if d is not None]
        generate_key = "data.toyworld" if hp.toyworld is not None else "data.generate"
        generated = [d for d in given if get_generated_dataset(d) is not None]
        if (hp.generate or hp.toyworld) and not generated:
            raise ConfigError(f"{generate_key} is given but no data is a generated dataset ({given})")
        for data in generated:
            check_generate_options(data, hp.generate or hp.toyworld or {}, key=generate_key)
        if hp.data_options:
            check_data_options([self._resolve(d)[1] for d in given], hp.data_options)

    # ----------------------------------------------------------------------------------- sources
    def _resolve(self, data: str) -> tuple[str, str]:
        """(path, kind) of a data argument; a generated dataset resolves to the file its writer makes."""
        hp = self.hparams
        kind = hp.data_kind if hp.data_kind != "auto" and data == hp.data else infer_data_kind(data)
        generated = get_generated_dataset(kind)
        if generated is not None:
            return str(self._data_dir(kind) / generated.filename), generated.kind
        return data, kind

    def _data_dir(self, name: str) -> Path:
        return Path(self.hparams.data_dir or Path("data") / name)

    def prepare_data(self) -> None:
        hp = self.hparams
        for data in {hp.data, hp.val_data, hp.test_data} - {None}:
            if get_generated_dataset(data) is not None:
                ensure_generated(data, self._data_dir(data), hp.generate or hp.toyworld)

    def _source(self, data: str, split: str, train: bool) -> Dataset:
        hp = self.hparams
        path, kind = self._resolve(data)
        options = {**hp, **(hp.data_options or {}), "train": train}
        return build_source(path, kind, split, hp.captions if train else "all", options)

    def _eval_data(self, given: str | None) -> str | None:
        if given is not None:
            return given
        _, kind = self._resolve(self.hparams.data)
        return self.hparams.data if get_data_kind(kind).has_splits else None

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
        model = {"pretrained": hp.pretrained, **(hp.model_overrides or {})}
        augment = hp.albumentations if train else None
        transform = get_transforms(hp.model, train=train, albumentations=augment, **model)
        captions = ("random" if hp.captions == "random" else "first") if train else "all"
        return ImageTextCollator(transform, get_tokenizer(hp.model, **model), captions=captions, seed=hp.seed)

    def _check_group_batches(self) -> None:
        options = self.hparams.group_batches
        if options is None:
            return
        unknown = sorted(set(options) - {"key", "per_group"})
        if unknown or "key" not in options:
            raise ConfigError(
                f"data.group_batches takes key (a record field) and per_group (default 2), got {sorted(options)}"
            )
        per_group = options.get("per_group", 2)
        if not isinstance(per_group, int) or per_group < 1 or self.hparams.batch_size % per_group:
            raise ConfigError(
                f"data.group_batches.per_group must divide data.batch_size {self.hparams.batch_size}, "
                f"got {per_group!r}"
            )

    def _group_sampler(self, dataset: Dataset) -> GroupedBatchSampler:
        hp, options = self.hparams, self.hparams.group_batches
        values = getattr(dataset, "field_values", None)
        if not callable(values):
            raise ConfigError(
                f"data.group_batches needs a map-style source with record fields, not {type(dataset).__name__}"
            )
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if world > 1 and trainer._accelerator_connector.use_distributed_sampler:
            raise ConfigError(
                "data.group_batches splits batches across ranks itself: set trainer.use_distributed_sampler: false"
            )
        per_group = options.get("per_group", 2)
        return GroupedBatchSampler(
            values(options["key"]),
            hp.batch_size // per_group,
            per_group,
            num_replicas=world,
            rank=rank,
            seed=hp.seed,
        )

    def _loader(self, name: str, train: bool) -> DataLoader:
        if name not in self._datasets:
            raise DataError(f"no {name} data was set up")
        dataset = self._datasets[name]
        hp = self.hparams
        workers = min(hp.num_workers, os.cpu_count() or 1)
        if train and hp.group_batches is not None:
            return DataLoader(
                dataset,
                batch_sampler=self._group_sampler(dataset),
                num_workers=workers,
                collate_fn=self._collator(train),
                persistent_workers=workers > 0,
            )
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
