"""Identity-level cross-modal losses: CMPM and CMPC (Zhang & Lu, "Deep Cross-Modal Projection Learning for
Image-Text Matching", ECCV 2018), as PLIP's and IRRA's released code compute them.

Both take paired `image_features [B, D]`, `text_features [B, D]` (row i of each is one image-caption pair)
and `ids [B]`, the identity of each pair: every image and caption of one identity match each other.

CMPM, cross-modal projection matching. The image→text direction: p_ij = softmax_j(x_i · z̄_j), the
projection of image i onto the *normalized* text j (the image itself is not normalized), and the target
q_ij = y_ij / ‖y_i‖₂ with y_ij = [id_i = id_j]; the loss is mean_i Σ_j p_ij (log p_ij - log(q_ij + ε)),
likewise text→image, and CMPM = the sum of both directions. The paper normalizes y_i by its sum (a
distribution); the released code (PLIP `Downstreams/CMPM-C/loss.py`, IRRA `compute_cmpm`) by its L2 norm,
which `label_norm="l2"` (the default) follows and `"sum"` replaces with the paper's.

CMPC, cross-modal projection classification: the image projected onto its own caption's direction,
x̂_i = (x_i · z̄_i) z̄_i, and the caption onto its image's, ẑ_i = (z_i · x̄_i) x̄_i, are classified into the
identities by a shared bias-free linear layer with unit-norm class columns W̄ (initialized Xavier-uniform as
the code does): CMPC = CE(x̂ W̄, id) + CE(ẑ W̄, id), each the mean over the batch.

Distributed: CMPM compares a row with *every* caption (or image) of the global batch, so the other
modality and the ids are gathered across ranks (`gather_with_grad=True` for exact gradients, as for
`ClipLoss`); with `local_loss` each rank computes its own rows, whose mean over ranks (what DDP's gradient
averaging gives) is the global batch's loss. CMPC has no term across pairs: each rank's mean over its own
pairs is already its share, and nothing is gathered.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import DistributedLossBase, check_feature_pair

__all__ = ["CMPCLoss", "CMPMLoss"]


def _check_ids(ids: torch.Tensor, n: int, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or tuple(ids.shape) != (n,) or ids.is_floating_point():
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ConfigError(
            f"{name} must be an integer tensor of shape ({n},) (one identity per pair), got {shape}"
        )
    return ids.long()


def _projection_matching(
    rows: torch.Tensor, columns: torch.Tensor, targets: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """mean over rows of KL(p ‖ q): p = softmax(rows · normalized columns), q = `targets`."""
    logits = rows @ F.normalize(columns, dim=-1).T
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * (log_p - torch.log(targets + epsilon))).sum(1).mean()


class CMPMLoss(DistributedLossBase):
    """Cross-modal projection matching (see the module docstring): `loss(image_features, text_features, ids)`.

    Args:
        epsilon: ε of log(q + ε) (IRRA's and PLIP's default 1e-8).
        label_norm: "l2" (the released code) or "sum" (the paper) normalization of the identity targets.
        local_loss, gather_with_grad, rank, world_size, group, check_inputs: as `ClipLoss`.
    """

    output_key = "cmpm_loss"

    def __init__(
        self,
        epsilon: float = 1e-8,
        label_norm: Literal["l2", "sum"] = "l2",
        local_loss: bool = False,
        gather_with_grad: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(local_loss, gather_with_grad, rank, world_size, group, check_inputs)
        if label_norm not in ("l2", "sum"):
            raise ConfigError(f"CMPMLoss: label_norm must be 'l2' or 'sum', got {label_norm!r}")
        if not epsilon > 0:
            raise ConfigError(f"CMPMLoss: epsilon must be positive, got {epsilon}")
        self.epsilon, self.label_norm = float(epsilon), label_norm

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        ids: torch.Tensor,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        check_feature_pair(image_features, text_features, finite=self.check_inputs)
        ids = _check_ids(ids, image_features.shape[0])
        rank, world_size = self.resolve_world()
        rows = self.pair_rows(image_features, text_features, rank, world_size)
        all_ids = self.gather(ids, with_grad=False) if world_size > 1 else ids
        row_ids = ids if rows.local or world_size == 1 else all_ids
        same = (row_ids[:, None] == all_ids[None, :]).to(image_features.dtype)
        norm = same.norm(dim=1, keepdim=True) if self.label_norm == "l2" else same.sum(1, keepdim=True)
        targets = same / norm
        loss = _projection_matching(
            rows.images, rows.all_texts, targets, self.epsilon
        ) + _projection_matching(rows.texts, rows.all_images, targets, self.epsilon)
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, label_norm={self.label_norm!r}, {super().extra_repr()}"


class CMPCLoss(nn.Module):
    """Cross-modal projection classification (see the module docstring):
    `CMPCLoss(feature_dim, num_classes)(image_features, text_features, ids)`, ids in `0..num_classes-1`.

    The class weights `weight [feature_dim, num_classes]` are the loss's own parameters: the optimizer must
    see them (a model that owns this loss as a submodule has them among its parameters).
    """

    output_key = "cmpc_loss"

    def __init__(self, feature_dim: int, num_classes: int, check_inputs: bool = True) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CMPCLoss: {name} must be a positive int, got {value!r}")
        self.weight = nn.Parameter(torch.empty(feature_dim, num_classes))
        nn.init.xavier_uniform_(self.weight, gain=1.0)
        self.check_inputs = check_inputs

    def class_weights(self) -> torch.Tensor:
        """The unit-norm class columns W̄."""
        return self.weight / self.weight.norm(dim=0, keepdim=True)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        ids: torch.Tensor,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        check_feature_pair(image_features, text_features, finite=self.check_inputs)
        if image_features.shape[1] != self.weight.shape[0]:
            raise ConfigError(
                f"CMPCLoss was built for {self.weight.shape[0]}-d features, got {image_features.shape[1]}-d"
            )
        ids = _check_ids(ids, image_features.shape[0])
        num_classes = self.weight.shape[1]
        if self.check_inputs and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
            raise ConfigError(
                f"CMPCLoss: ids must lie in [0, {num_classes}), got min {int(ids.min())}, max {int(ids.max())}"
            )
        image_dir, text_dir = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
        image_on_text = (image_features * text_dir).sum(1, keepdim=True) * text_dir
        text_on_image = (text_features * image_dir).sum(1, keepdim=True) * image_dir
        classes = self.class_weights()
        loss = F.cross_entropy(image_on_text @ classes, ids) + F.cross_entropy(text_on_image @ classes, ids)
        return {self.output_key: loss} if output_dict else loss

    def extra_repr(self) -> str:
        return f"feature_dim={self.weight.shape[0]}, num_classes={self.weight.shape[1]}"
