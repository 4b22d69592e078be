"""The person models, registered with vlzoo's registry when this module is imported (the `vlzoo.models`
entry point), along with the domain's data formats and data kinds."""

from vlzoo.person import (
    data,  # noqa: F401  (TBPS data kinds, person-toyworld)
    flip,  # noqa: F401  (flip-vit-b-16, flip-tiny)
    pedestrian_clip,  # noqa: F401  (person-clip-tiny)
    plip,  # noqa: F401  (plip-rn50, plip-tiny)
    unipt,  # noqa: F401  (unipt-vit-b-16, unipt-tiny)
)
