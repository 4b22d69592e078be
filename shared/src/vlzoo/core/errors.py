"""Exceptions of vlzoo. Each message names the thing at fault (a model, a key, a file, a shape)."""


class VlzooError(Exception):
    """Base class of every error vlzoo raises on purpose."""


class UnknownModelError(VlzooError, KeyError):
    """A model name (or a pretrained tag) that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(VlzooError, ValueError):
    """A config or an override that does not fit the model's config dataclass."""


class DataError(VlzooError, ValueError):
    """Bad input data: an unreadable file, a wrong shape, an empty caption. The message names the file."""


class WeightsError(VlzooError, RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


class DownloadError(WeightsError):
    """A download that failed, or that could not be made because the network is off."""


class ChecksumError(DownloadError):
    """A downloaded file whose sha256 is not the expected one."""
