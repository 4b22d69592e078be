"""`vlzoo-ocr fit-mmocr`: train MMOCR's own DBNet from a vlzoo ODM (or DBNet) backbone, as ODM's official
route does (`tools/convert2mmocr.py`, then MMOCR's `dbnet_resnet50-oclip_1200e_icdar2015.py`).

Needs the `[mmocr]` extra (mmengine, mmcv with its compiled operators, mmdet, mmocr 1.x): written against
MMOCR 1.x's documented API (`mmocr.utils.register_all_modules`, mmengine's `Config` and `Runner`), imported
only when the command runs. mmcv has no wheel for the torch this project pins, so this path is not run in
the test suite: what is tested without the extra is the export, the MMOCR annotation file and the clear
error naming the missing extra.

The exported checkpoint carries `backbone.`-prefixed keys (as the official converter writes them), so the
config's backbone is initialized with mmengine's `Pretrained` init and `prefix="backbone."`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from vlzoo.core import ConfigError, DataError
from vlzoo.ocr.data.icdar import read_detection_records

MMOCR_EXTRA = ("mmengine", "mmcv", "mmdet", "mmocr")
# MMOCR's DBNet recipe on the oCLIP ResNet-50 (ODM's Table: DBNet + ODM on ICDAR 2015)
MMOCR_DBNET_CONFIG = "textdet/dbnet/dbnet_resnet50-oclip_1200e_icdar2015.py"
MMOCR_SPLITS = {"train": "train_dataloader", "test": "test_dataloader", "val": "val_dataloader"}


def require_mmocr() -> None:
    """Raise a `ConfigError` naming the extra when any of its packages is absent."""
    missing = [name for name in MMOCR_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"fit-mmocr needs the mmocr extra, missing {', '.join(missing)}: "
            "pip install 'vlzoo-ocr[mmocr]' (mmcv needs compiled operators for your torch: "
            "see https://mmcv.readthedocs.io/en/latest/get_started/installation.html)"
        )


def write_mmocr_textdet(data: str | Path, split: str, out: str | Path) -> Path:
    """A detection dataset's `split` as MMOCR 1.x's text-detection annotation file (`textdet_<split>.json`:
    `metainfo` + `data_list` of `img_path`, `height`, `width` and `instances` with `polygon`, `bbox`,
    `bbox_label` 0 and `ignore` for `###`), image paths absolute so `data_root` need not hold the images."""
    records = read_detection_records(data, split)
    data_list = []
    for record in records:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f"{record.image_path}: the image cannot be decoded")
        instances = []
        for word in record.instances:
            x0, y0 = word.polygon.min(0)
            x1, y1 = word.polygon.max(0)
            instances.append(
                {
                    "polygon": [float(v) for v in word.polygon.reshape(-1)],
                    "bbox": [float(x0), float(y0), float(x1), float(y1)],
                    "bbox_label": 0,
                    "ignore": word.ignore,
                }
            )
        height, width = image.shape[:2]
        data_list.append(
            {
                "img_path": str(Path(record.image_path).resolve()),
                "height": height,
                "width": width,
                "instances": instances,
            }
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset_type": "TextDetDataset", "task_name": "textdet", "category": [{"id": 0, "name": "text"}]}
    out.write_text(json.dumps({"metainfo": meta, "data_list": data_list}))
    return out


def dataset_splits(data: str | Path) -> list[str]:
    """The splits of `data` MMOCR gets: an index JSON's non-empty train/val/test, a folder's images as train
    (the other loaders keep the config's own datasets)."""
    path = Path(data)
    if path.is_dir():
        return ["train"]
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: cannot read the dataset index's splits ({err})") from err
    return [split for split in MMOCR_SPLITS if splits.get(split)]


def _set_dataset(cfg: Any, loader: str, data_root: Path, ann_file: str) -> None:
    dataset = cfg[loader]["dataset"]
    # ConcatDataset-style configs hold a list under `datasets`; a plain OCRDataset is the common case
    for part in dataset.get("datasets", [dataset]):
        part["data_root"] = str(data_root)
        part["ann_file"] = ann_file


def fit_mmocr(
    checkpoint: str | Path,
    work_dir: str | Path,
    *,
    config: str = MMOCR_DBNET_CONFIG,
    data: str | Path | None = None,
    max_epochs: int | None = None,
    cfg_options: Sequence[str] = (),
) -> Path:
    """Export `checkpoint`'s backbone for MMOCR, point `config` (a file, or a path inside MMOCR's own
    configs) at it, optionally at `data` (an ICDAR-style dataset written as MMOCR annotation files), and
    train with mmengine's `Runner`. Returns the work dir."""
    require_mmocr()
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner
    from mmocr.utils import register_all_modules

    from vlzoo.ocr.odm import export_mmocr

    register_all_modules(init_default_scope=True)
    work_dir = Path(work_dir)
    backbone = export_mmocr(checkpoint, work_dir / "backbone.pth")
    path = Path(config)
    if not path.is_file():
        import mmocr

        path = Path(mmocr.__file__).parent / ".mim" / "configs" / config
        if not path.is_file():
            raise ConfigError(f"fit-mmocr: no config {config!r} (neither a file nor in MMOCR's configs)")
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.init_cfg = {"type": "Pretrained", "checkpoint": str(backbone), "prefix": "backbone."}
    if data is not None:
        for split in dataset_splits(data):
            ann = write_mmocr_textdet(data, split, work_dir / "data" / f"textdet_{split}.json")
            if MMOCR_SPLITS[split] in cfg:
                _set_dataset(cfg, MMOCR_SPLITS[split], ann.parent, ann.name)
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
    if cfg_options:  # parsed as MMOCR's tools/train.py parses its --cfg-options
        parser = argparse.ArgumentParser(prog="fit-mmocr")
        parser.add_argument("--cfg-options", nargs="+", action=DictAction)
        cfg.merge_from_dict(parser.parse_args(["--cfg-options", *cfg_options]).cfg_options)
    Runner.from_cfg(cfg).train()
    return work_dir


__all__ = [
    "MMOCR_DBNET_CONFIG",
    "MMOCR_EXTRA",
    "dataset_splits",
    "fit_mmocr",
    "require_mmocr",
    "write_mmocr_textdet",
]
