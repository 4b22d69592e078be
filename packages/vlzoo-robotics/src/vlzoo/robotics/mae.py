"""A masked-autoencoder (MAE) objective as an option for pre-training a zoo model's ViT image tower.

H2R pre-trains MAE- and R3M-style visual encoders on its augmented frames; this is the MAE option (He et
al., "Masked Autoencoders Are Scalable Vision Learners"), following the official MAE code: per image a
random 75% of the patches is dropped, the ViT encodes the visible ones (with the class token), a light
transformer decoder (timm `Block`s, fixed 2-D sine-cosine position table, a learned mask token) fills the
grid back in and predicts each masked patch's pixels; the loss is the mean squared error on the masked
patches only, against per-patch normalized pixels (`norm_pix_loss`, as the official README pre-trains;
the flag itself defaults off there, and `norm_pix_loss=False` is the raw-pixel target).
AdamW with betas (0.9, 0.95) and weight decay 0.05, as the official recipe (which exempts biases and
norms from the decay; here every trained parameter decays, a simplification at toy scale). The encoder is
the zoo model's own timm ViT (`model.visual.trunk`), so the trained model is saved and loaded like any other zoo model;
models meant for it (`h2r-mae-tiny`) start their position table from the sine-cosine table, as MAE's
encoder uses it (here it stays trainable) and pool the patch tokens by their mean (MAE's `global_pool`),
since MAE never trains the class token for anything.

    module = MaskedAutoencoderModule("h2r-mae-tiny")
    L.Trainer(max_epochs=50).fit(module, DataLoader(ClipImages("runs/h2r/captions.csv", "h2r-mae-tiny"), ...))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.data import Dataset

from vlzoo.core import create_model, get_transforms
from vlzoo.core.errors import ConfigError
from vlzoo.robotics.video import split_frames

__all__ = ["ClipImages", "MaskedAutoencoderModule", "masked_patch_loss", "patchify"]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """`[B, C, H, W]` → `[B, N, patch·patch·C]`, patches in row-major grid order (the ViT's token order)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True):
    """MAE's loss: per-patch mean squared error, averaged over the masked patches (`mask` 1) only; with
    `norm_pix` the target patch is standardized by its own mean and variance first."""
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


class ClipImages(Dataset):
    """Every frame of every clip of `split` as one training image, from any layout `list_clips` reads,
    preprocessed as `model` trains (`train`) or evaluates: `{"image": [C, H, W]}`. Clips are decoded once
    and kept (toy-sized data); an unreadable one is a `DataError` naming it."""

    def __init__(self, path: str | os.PathLike, model: str, split: str = "train", train: bool = True):
        self.frames = np.concatenate(split_frames(path, split)[1])
        self.preprocess = get_transforms(model, train=train)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.preprocess(torch.from_numpy(self.frames[index]).permute(2, 0, 1))}


class MaskedAutoencoderModule(L.LightningModule):
    """A zoo CLIP's ViT image tower trained with MAE's objective (module docstring); `self.model` is the
    whole zoo model (its text tower untouched), saved with `vlzoo.core.weights.save` like any other."""

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"MAE: mask_ratio must be in (0, 1), got {mask_ratio}")
        self.model = create_model(model, pretrained=pretrained)
        trunk = self.model.visual.trunk
        if not all(hasattr(trunk, a) for a in ("patch_embed", "pos_embed", "cls_token", "blocks")):
            raise ConfigError(
                f"MAE: {model}'s image tower {type(trunk).__name__} is not a ViT with a class token"
            )
        self.patch = trunk.patch_embed.patch_size[0]
        grid = list(trunk.patch_embed.grid_size)
        width = trunk.embed_dim
        self.decoder_embed = nn.Linear(width, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        # fixed, as the official decoder's (requires_grad=False); a zero row for the class token
        table = build_sincos2d_pos_embed(grid, dim=decoder_dim)
        self.register_buffer("decoder_pos", torch.cat([torch.zeros(1, decoder_dim), table])[None])
        self.decoder = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                       for _ in range(decoder_depth)])  # fmt: skip
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(
            decoder_dim, self.patch * self.patch * trunk.patch_embed.proj.in_channels
        )

    def encode_visible(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(encoded class + visible tokens `[B, 1 + keep, D]`, the mask `[B, N]` (1 = dropped), the order
        that puts shuffled tokens back `[B, N]`): MAE's per-sample random masking by argsort of noise."""
        trunk = self.model.visual.trunk
        x = trunk.patch_embed(images)
        b, n, d = x.shape
        prefix = trunk.num_prefix_tokens
        x = x + trunk.pos_embed[:, prefix:]
        keep = max(1, int(n * (1 - self.hparams.mask_ratio)))
        shuffle = torch.rand(b, n, device=x.device).argsort(1)
        restore = shuffle.argsort(1)
        x = x.gather(1, shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        mask = mask.gather(1, restore)
        cls = (trunk.cls_token + trunk.pos_embed[:, :prefix]).expand(b, -1, -1)
        x = trunk.norm(trunk.blocks(trunk.norm_pre(torch.cat([cls, x], 1))))
        return x, mask, restore

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the MAE loss, the mask) of a batch of preprocessed images."""
        latent, mask, restore = self.encode_visible(images)
        x = self.decoder_embed(latent)
        b, n = restore.shape
        filled = torch.cat([x[:, 1:], self.mask_token.expand(b, n + 1 - x.shape[1], -1)], 1)
        filled = filled.gather(1, restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], filled], 1) + self.decoder_pos
        pred = self.decoder_pred(self.decoder_norm(self.decoder(x)))[:, 1:]
        target = patchify(images, self.patch)
        return masked_patch_loss(pred, target, mask, self.hparams.norm_pix_loss), mask

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self(batch["image"])
        self.log("train/mae", loss.detach(), batch_size=len(batch["image"]))
        return loss

    def configure_optimizers(self):
        params = [p for n, p in self.named_parameters() if not n.startswith("model.text")]
        return torch.optim.AdamW(params, lr=self.hparams.lr, betas=(0.9, 0.95),
                                 weight_decay=self.hparams.weight_decay)  # fmt: skip
