"""vlzoo.geometry: GeoX with a diagram encoder, symbol decoder and GS-Former."""

from vlzoo.geometry import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.geometry.program import choose_answer, execute_program

__version__ = "0.1.0"

__all__: list[str] = ["choose_answer", "execute_program"]
