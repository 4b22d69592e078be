"""Training with Lightning: the module that wraps any registered model, the data module, callbacks."""

from vlzoo.core.train.callbacks import ExportWeights, SkippedSamplesMonitor
from vlzoo.core.train.datamodule import ImageTextDataModule, data_kind
from vlzoo.core.train.module import ContrastiveModule, NonFiniteLossError, param_groups
from vlzoo.core.train.schedule import warmup_cosine, warmup_cosine_factor

__all__ = [
    "ContrastiveModule",
    "ExportWeights",
    "ImageTextDataModule",
    "NonFiniteLossError",
    "SkippedSamplesMonitor",
    "data_kind",
    "param_groups",
    "warmup_cosine",
    "warmup_cosine_factor",
]
