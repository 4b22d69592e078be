"""Training with Lightning: the module that wraps any registered model, the data module, callbacks."""

from vlzoo.core.train.callbacks import ExportWeights, SkippedSamplesMonitor
from vlzoo.core.train.datamodule import ImageTextDataModule, data_kind
from vlzoo.core.train.module import NonFiniteLossError, ZooModule, param_groups
from vlzoo.core.train.schedule import warmup_cosine, warmup_cosine_factor

__all__ = [
    "ExportWeights",
    "ImageTextDataModule",
    "NonFiniteLossError",
    "SkippedSamplesMonitor",
    "ZooModule",
    "data_kind",
    "param_groups",
    "warmup_cosine",
    "warmup_cosine_factor",
]
