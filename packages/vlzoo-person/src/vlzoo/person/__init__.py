"""vlzoo.person: PLIP, UniPT and FLIP on TBPS and face-caption data."""

from vlzoo.person import models  # noqa: F401  (registers the models and data kinds)

__version__ = "0.1.0"

__all__: list[str] = []
