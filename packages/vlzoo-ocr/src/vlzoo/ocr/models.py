"""The ocr models, registered with vlzoo's registry when this module is imported (the `vlzoo.models`
entry point), along with the domain's data formats and data kinds."""

from vlzoo.ocr import (
    data,  # noqa: F401  (icdar-detection, ocr-toyworld)
    dbnet,  # noqa: F401  (dbnet-rn50, dbnet-tiny)
    dptr,  # noqa: F401  (dptr-parseq-vit-s, dptr-parseq-tiny)
    odm,  # noqa: F401  (odm-rn50, odm-tiny)
)
