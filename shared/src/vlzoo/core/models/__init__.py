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
from vlzoo.core.models.generation import AllowedTokens, BeamSearchOutput, beam_search, greedy_search
from vlzoo.core.models.qformer import QFormer, QFormerConfig, QFormerOutput

__all__ = [
    "CAPABILITIES",
    "DEFAULT_TOY_DATA",
    "AllowedTokens",
    "BeamSearchOutput",
    "CLIPConfig",
    "DualEncoder",
    "DualEncoderFaces",
    "FusionConfig",
    "FusionEncoder",
    "FusionOutput",
    "QFormer",
    "QFormerConfig",
    "QFormerOutput",
    "ZooModel",
    "beam_search",
    "capabilities",
    "check_forward_output",
    "check_model",
    "greedy_search",
    "has_capability",
    "require_capability",
    "toy_data",
]
