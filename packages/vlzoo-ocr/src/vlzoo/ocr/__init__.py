"""vlzoo.ocr: ODM pre-training with DBNet detection and DPTR recognition."""

from vlzoo.ocr import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.ocr.data.lmdb import LmdbDataset
from vlzoo.ocr.metrics_detection import detection_metrics
from vlzoo.ocr.metrics_recognition import recognition_metrics

__version__ = "0.1.0"

__all__: list[str] = [
    "LmdbDataset",
    "detection_metrics",
    "recognition_metrics",
]
