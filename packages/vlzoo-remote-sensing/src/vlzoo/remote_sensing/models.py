"""The remote-sensing models, registered with vlzoo's registry when this module is imported (the
`vlzoo.models` entry point), along with the domain's data formats and data kinds."""

from vlzoo.remote_sensing import (
    data,  # noqa: F401  (GeoTIFF decoder, rs-toyworld, data kinds)
    priorclip,  # noqa: F401
    rs_m_clip,  # noqa: F401
)
