"""NegCLIP (Yuksekgonul et al., ICLR 2023, "When and why vision-language models behave like bags-of-words"):
CLIP's loss with hard-negative captions, e.g. each image's caption with its words swapped, or the caption of
the image's minimal-pair distractor (the same objects, one attribute or relation changed).

The hard negatives are extra columns of the image→text direction only: every image is contrasted with the
batch's captions *and* the batch's hard-negative captions (all of them, not only its own), while every
caption is still contrasted with the batch's images. This follows the official NegCLIP training code, which
appends the negative captions to the text batch and keeps only the real captions' rows for text→image.
"""

from __future__ import annotations

import torch

from vlzoo.core.losses.contrastive import ClipLoss, check_feature_pair, rows_clip_loss

__all__ = ["NegClipLoss"]


class NegClipLoss(ClipLoss):
    """:class:`ClipLoss` whose image→text softmax also runs over `negative_text_features`.

    ``loss = (CE(s * I @ [T; N].T, diag) + CE(s * T @ I.T, diag)) / 2``: ``N`` [n, D] holds the batch's hard
    negative captions (any number, commonly one per image). Without negatives it is exactly `ClipLoss`.
    Distributed, the negatives are gathered like the captions (every rank must hold the same ``n``), so each
    image meets the global batch's negatives as NegCLIP's single-process batch would.
    """

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        negative_text_features: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if negative_text_features is None:
            return super().forward(image_features, text_features, logit_scale, output_dict=output_dict)
        scale = self.checked_inputs(image_features, text_features, logit_scale)
        check_feature_pair(
            image_features,
            negative_text_features,
            same_batch=False,
            names=("image_features", "negative_text_features"),
            finite=self.check_inputs,
        )
        rank, world_size = self.resolve_world()
        rows = self.pair_rows(image_features, text_features, rank, world_size)
        negatives = negative_text_features if world_size == 1 else self.gather(negative_text_features)
        columns = torch.cat([rows.all_texts, negatives])
        eps = self.label_smoothing
        image_to_text = rows_clip_loss((scale * rows.images) @ columns.T, rows.offset, eps)
        text_to_image = rows_clip_loss((scale * rows.texts) @ rows.all_images.T, rows.offset, eps)
        return self.result(0.5 * (image_to_text + text_to_image), output_dict)
