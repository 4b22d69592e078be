"""Model families of the core and the contract every zoo model honours (:mod:`vlzoo.core.models.contract`)."""

from vlzoo.core.models.contract import (
    CAPABILITIES,
    DEFAULT_TOY_DATA,
    ZooModel,
    capabilities,
    check_forward_output,
    check_model,
    has_capability,
    require_capability,
    toy_data,
)
from vlzoo.core.models.dual_encoder import CLIPConfig, DualEncoder, DualEncoderFaces
from vlzoo.core.models.fusion import FusionConfig, FusionEncoder, FusionOutput

__all__ = [
    "CAPABILITIES",
    "DEFAULT_TOY_DATA",
    "CLIPConfig",
    "DualEncoder",
    "DualEncoderFaces",
    "FusionConfig",
    "FusionEncoder",
    "FusionOutput",
    "ZooModel",
    "capabilities",
    "check_forward_output",
    "check_model",
    "has_capability",
    "require_capability",
    "toy_data",
]
