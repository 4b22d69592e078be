"""The medical models, registered with vlzoo's registry when this module is imported (the `vlzoo.models`
entry point), along with the domain's data formats and data kinds."""

from vlzoo.medical import (  # noqa: F401  (RadCLIP, ConceptCLIP)
    conceptclip,
    data,
    ptunifier,
    radclip,
)
