"""The geometry models, registered with vlzoo's registry when this module is imported (the `vlzoo.models`
entry point), along with the domain's data formats and data kinds."""

from vlzoo.geometry import data, geox  # noqa: F401  (data kinds, geo-toyworld; geox-base, geox-tiny)
