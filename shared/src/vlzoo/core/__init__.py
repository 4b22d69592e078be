"""vlzoo.core: registry, towers, dual encoders, losses and weights shared by every vlzoo domain package."""

from vlzoo.core.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DownloadError,
    UnknownModelError,
    VlzooError,
    WeightsError,
)

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "UnknownModelError",
    "VlzooError",
    "WeightsError",
]
