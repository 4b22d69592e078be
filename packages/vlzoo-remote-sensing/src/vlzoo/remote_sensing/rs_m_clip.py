"""RS-M-CLIP (Silva et al., 2024, "Multilingual Vision-Language Pre-training for the Remote Sensing Domain").

A multilingual CLIP (open_clip's `xlm-roberta-base-ViT-B-32`: a ViT-B/32 image tower, an XLM-RoBERTa text
tower with mean pooling and a two-layer MLP projection) fine-tuned on remote-sensing captions in ten
languages with two objectives:

* the symmetric InfoNCE of CLIP between the image and its caption (`vlzoo.core.losses.ClipLoss`, gathered
  across ranks with gradients, so the distributed gradient is the single-process one);
* DINO's self-distillation (Caron et al., 2021) between the image tower (the student) and an exponential
  moving average of it (the teacher): both end in a DINO projection head (3-layer MLP, L2-normalized
  bottleneck, weight-normalized last linear); the teacher sees the global crops of the image, the student
  global and local crops, and the student's softmax on each crop is pulled towards the teacher's centered,
  sharpened softmax on every other global crop.

`loss = contrastive + distill_weight * self-distillation`.

Where the settings come from. The paper's abstract and official README (DannielSilva/RS-M-CLIP, which holds
no training code) fix the architecture, the starting checkpoint (LAION's
`CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k`), the ten languages and the released weights
(`hf-hub:joaodaniel/RS-M-CLIP`, open_clip format). The paper's own text could not be consulted here for the
self-distillation settings, so each follows DINO's official defaults (facebookresearch/dino `main_dino.py`)
and is a config field: 2 global crops of the model's image size at scale (0.4, 1), 8 local crops of 96 px
at scale (0.05, 0.4), DINO's flip / colour-jitter / blur / solarize augmentations, head 2048-2048-256 →
65536 with the weight-norm magnitude fixed at 1, student temperature 0.1, teacher temperature 0.04, centre
momentum 0.9, teacher momentum 0.996 raised to 1 by a cosine schedule over training, and the last layer
frozen at the start (DINO: its first epoch; here the first 10% of the steps, one epoch of a ten-epoch
fine-tuning: chosen). Chosen as well: loss weight 1; the head on the image tower's projected embedding (the
one the contrastive loss uses), as SILC combines CLIP and DINO; a separate, mildly augmented view
(`"image"`) for the contrastive loss, since DINO's flips and colour changes would contradict captions that
name sides and colours.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2 as T

from vlzoo.core import register_model
from vlzoo.core.data import build_transform
from vlzoo.core.distributed import is_distributed
from vlzoo.core.errors import ConfigError, DataError, WeightsError
from vlzoo.core.models import CLIPConfig, DualEncoder
from vlzoo.core.towers import TextTowerConfig, VisionTowerConfig
from vlzoo.core.weights import WeightSpec, from_open_clip, model_label, register_converter
from vlzoo.remote_sensing.data.toyworld import rs_toyworld_band_stats
from vlzoo.remote_sensing.data.transforms import geo_transform

__all__ = [
    "RSMCLIP",
    "DINOHead",
    "DINOLoss",
    "DINOView",
    "MultiCropConfig",
    "MultiCropTransform",
    "RSMCLIPConfig",
    "SelfDistillConfig",
    "from_open_clip_hf_text",
    "teacher_momentum",
    "teacher_temperature",
]

# ------------------------------------------------------------------------------------------- config


@dataclass
class SelfDistillConfig:
    """DINO self-distillation between the image tower and its EMA teacher (defaults: DINO's official ones)."""

    enabled: bool = True
    weight: float = 1.0  # of the self-distillation term in the total loss
    out_dim: int = 65536  # prototypes K of the last (weight-normed) layer
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    layers: int = 3  # of the MLP before the L2-normalized bottleneck
    norm_last_layer: bool = True  # freeze the weight-norm magnitude g at 1, as DINO does by default
    # DINO cancels the last layer's gradients during its first epoch (of 100), which it found steadies the
    # start of training; here a fraction of the training steps (0.1: one epoch of ten).
    freeze_last_layer: float = 0.1
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04  # teacher temperature at step 0, raised linearly to teacher_temp
    teacher_temp_warmup: float = 0.0  # fraction of the training steps the warm-up lasts
    center_momentum: float = 0.9
    momentum: float = 0.996  # of the EMA teacher at step 0 ...
    momentum_final: float = 1.0  # ... raised to this by a cosine schedule (equal values: a fixed momentum)


@dataclass
class MultiCropConfig:
    """DINO's multi-crop views; `global_size=0` means the model's image size."""

    global_crops: int = 2
    global_size: int = 0
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_crops: int = 8
    local_size: int = 96
    local_scale: tuple[float, float] = (0.05, 0.4)


@dataclass
class RSMCLIPConfig(CLIPConfig):
    """`CLIPConfig` plus the self-distillation head, its loss and the multi-crop views it is trained on."""

    toy_data: ClassVar[str] = "rs-toyworld"  # the generated dataset its tiny models train on

    distill: SelfDistillConfig = field(default_factory=SelfDistillConfig)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)

    def build(self) -> RSMCLIP:
        return RSMCLIP(self)

    def transform(self, train: bool, albumentations: Any = None) -> Callable[[Any], Any]:
        """The remote-sensing preprocessing (`geo_transform`: per-band normalization, nodata to the band mean;
        RGB images and multispectral GeoTIFFs alike), or the core's with `albumentations`. Training with
        self-distillation: a `MultiCropTransform` whose dict holds that view as `"image"` (the contrastive
        one), `"global_crops"` `[G, C, H, W]` and `"local_crops"` `[L, C, h, w]`."""
        if albumentations is not None:
            main = build_transform(self.vision, train, albumentations)
        else:
            main = geo_transform(self.vision, train)
        if not (train and self.distill.enabled):
            return main
        return MultiCropTransform(self.vision, self.crops, main)


# ------------------------------------------------------------------------------------- multi-crop


class DINOView:
    """One of DINO's views of an image: random resized crop, horizontal flip, colour jitter and greyscale,
    Gaussian blur, solarization.

    Cropping goes through `geo_transform` (bands normalized and nodata filled first, so no NaN is smeared
    by the resampling). Blur is linear, so it acts on normalized pixels alike. Colour jitter, greyscale and
    solarization are defined on RGB in [0, 1]: they run only for 3-band towers whose mean/std are in those
    units (8-bit imagery), on the pixels with the normalization undone around them.
    """

    def __init__(
        self, vision: VisionTowerConfig, size: int, scale: tuple[float, float], blur: float, solarize: float
    ):
        self.crop = geo_transform(dataclasses.replace(vision, image_size=size), True, crop_scale=tuple(scale))
        self.flip = T.RandomHorizontalFlip()
        # DINO blurs with a radius in [0.1, 2] px at 224 px; the kernel spans about a tenth of the crop.
        kernel = max(3, (size // 10) | 1)
        self.blur = T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur)
        self.rgb = vision.in_chans == 3 and max(vision.mean) <= 1.0
        self.mean = torch.tensor(vision.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(vision.std, dtype=torch.float32).view(-1, 1, 1)
        colour = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
        self.colour = T.Compose(
            [*colour, self.blur, *([T.RandomSolarize(0.5, p=solarize)] if solarize else [])]
        )

    def __call__(self, image: Any) -> torch.Tensor:
        x = self.flip(self.crop(image))
        if not self.rgb:
            return self.blur(x)
        rgb = self.colour((x * self.std + self.mean).clamp_(0.0, 1.0))
        return (rgb - self.mean) / self.std


class MultiCropTransform:
    """Image → `{"image", "global_crops": [G, C, H, W], "local_crops": [L, C, h, w]}`.

    As DINO: the first global crop is always blurred, the others with p=0.1 and solarized with p=0.2;
    local crops are blurred with p=0.5. `"image"` is the `main` transform's view.
    """

    def __init__(
        self, vision: VisionTowerConfig, crops: MultiCropConfig, main: Callable[[Any], torch.Tensor]
    ):
        if crops.global_crops < 1 or crops.local_crops < 0:
            raise ConfigError(
                f"crops: need at least one global crop and no negative local count, got "
                f"global_crops={crops.global_crops}, local_crops={crops.local_crops}"
            )
        size = crops.global_size or vision.image_size
        self.main = main
        self.globals = [
            DINOView(
                vision, size, crops.global_scale, blur=1.0 if i == 0 else 0.1, solarize=0.0 if i == 0 else 0.2
            )
            for i in range(crops.global_crops)
        ]
        self.local = DINOView(vision, crops.local_size, crops.local_scale, blur=0.5, solarize=0.0)
        self.local_crops = crops.local_crops

    def __call__(self, image: Any) -> dict[str, torch.Tensor]:
        out = {"image": self.main(image), "global_crops": torch.stack([view(image) for view in self.globals])}
        if self.local_crops:
            out["local_crops"] = torch.stack([self.local(image) for _ in range(self.local_crops)])
        return out

    def __repr__(self) -> str:
        return (
            f"MultiCropTransform(globals={len(self.globals)}, locals={self.local_crops}, main={self.main!r})"
        )


# ---------------------------------------------------------------------------------- DINO head, loss


class DINOHead(nn.Module):
    """DINO's projection head: MLP (GELU) → L2-normalized bottleneck → weight-normalized linear to K logits."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        layers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        if layers < 1:
            raise ConfigError(f"distill.layers must be >= 1, got {layers}")
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        mlp: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            mlp.append(nn.Linear(a, b))
            if i < layers - 1:
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        self.apply(_trunc_normal_init)
        # w = g * v / ||v|| per output unit; g starts at 1 and, with norm_last_layer, stays there.
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck_dim, out_dim, bias=False)
        )
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        if not freeze_last_layer:
            return self.last_layer(z)
        # Zero gradients rather than none: every parameter still takes part (as DDP requires), and the
        # optimizer's weight decay only rescales v, which the weight norm divides out.
        weight = self.last_layer.weight
        return F.linear(z, weight.detach() + 0.0 * weight)


def _trunc_normal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DINOLoss(nn.Module):
    """Cross-entropy between the teacher's centered, sharpened softmax and the student's, over crop pairs.

    `forward(student [V, B, K], teacher [G, B, K])` where the first G student crops are the teacher's G
    global crops: every (teacher crop g, student crop v) pair with v != g counts once, each a mean over the
    batch; the result is their mean. The centre (an EMA of the teacher's batch mean, reduced over ranks)
    is updated by `update_center` after the loss is taken.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        if student.ndim != 3 or teacher.ndim != 3 or student.shape[1:] != teacher.shape[1:]:
            raise ConfigError(
                f"DINOLoss takes student [V, B, K] and teacher [G, B, K], got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        views, globals_ = student.shape[0], teacher.shape[0]
        if views < 2 or globals_ > views:
            raise ConfigError(
                f"DINOLoss needs >= 2 student crops covering the {globals_} teacher crops, got {views}"
            )
        log_p = F.log_softmax(student.float() / self.student_temp, dim=-1)
        q = F.softmax((teacher.float() - self.center) / teacher_temp, dim=-1).detach()
        # Mean over the batch of -sum_k q_g log p_v, for every (g, v) at once: [G, V].
        cross = -torch.einsum("gbk,vbk->gv", q, log_p) / student.shape[1]
        # A global crop never teaches itself: drop the pairs (g, g).
        keep = ~torch.eye(globals_, views, dtype=torch.bool, device=cross.device)
        return cross[keep].mean()

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """c ← m c + (1 - m) mean(teacher outputs of every crop on every rank)."""
        flat = teacher.detach().float().reshape(-1, teacher.shape[-1])
        batch_sum = flat.sum(dim=0, keepdim=True)
        count = torch.tensor(float(flat.shape[0]), device=flat.device)
        if is_distributed():
            import torch.distributed as dist

            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)


def teacher_momentum(step: int, total_steps: int, base: float, final: float) -> float:
    """DINO's cosine schedule: `final + (base - final) * (1 + cos(pi * step / total_steps)) / 2`."""
    progress = min(max(step, 0), max(total_steps, 1)) / max(total_steps, 1)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def teacher_temperature(step: int, total_steps: int, cfg: SelfDistillConfig) -> float:
    """Linear warm-up from `warmup_teacher_temp` to `teacher_temp` over the first `teacher_temp_warmup` of steps."""
    warmup = int(cfg.teacher_temp_warmup * total_steps)
    if warmup <= 0 or step >= warmup:
        return cfg.teacher_temp
    return cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * step / warmup


# ------------------------------------------------------------------------------------------- model


class RSMCLIP(DualEncoder):
    """Dual encoder + (when `distill.enabled`) DINO head, EMA teacher (tower and head) and DINO loss.

    The teacher never receives gradients (`requires_grad=False`, evaluated under `no_grad`, kept in eval
    mode); it moves only in `on_train_step_end`, by `θ_t ← m θ_t + (1 - m) θ_s`.
    """

    # Training-only state that released CLIP weights lack: loading them leaves the head at its
    # initialization and the teacher a copy of the student (see `_sync_teacher_if_missing`).
    optional_state_prefixes = ("student_head.", "teacher.", "dino_loss.")

    def __init__(self, cfg: RSMCLIPConfig):
        super().__init__(cfg)
        d = cfg.distill
        self.teacher_temp = d.warmup_teacher_temp if d.teacher_temp_warmup > 0 else d.teacher_temp
        self.steps_done, self.total_steps = 0, 0  # of training, as the core's hook reports them
        if not d.enabled:
            return
        self.student_head = DINOHead(
            self.visual.output_dim, d.out_dim, d.hidden_dim, d.bottleneck_dim, d.layers, d.norm_last_layer
        )
        self.teacher = nn.ModuleDict(
            {"visual": copy.deepcopy(self.visual), "head": copy.deepcopy(self.student_head)}
        )
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.dino_loss = DINOLoss(d.out_dim, d.student_temp, d.center_momentum)
        self.register_load_state_dict_post_hook(_sync_teacher_if_missing)

    @property
    def distilling(self) -> bool:
        return self.config.distill.enabled

    def train(self, mode: bool = True) -> RSMCLIP:
        super().train(mode)
        if self.distilling:
            self.teacher.eval()  # DINO's teacher runs without drop-path; a ViT has no batch norm to update
        return self

    def _student_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.teacher["visual"], self.visual), (self.teacher["head"], self.student_head)]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """θ_t ← m θ_t + (1 - m) θ_s for every parameter and floating buffer of the tower and the head."""
        teacher, student = [], []
        for t_mod, s_mod in self._student_pairs():
            for t, s in zip(t_mod.parameters(), s_mod.parameters(), strict=True):
                teacher.append(t)
                student.append(s.detach())
            for t, s in zip(t_mod.buffers(), s_mod.buffers(), strict=True):
                if t.is_floating_point():
                    teacher.append(t)
                    student.append(s)
        torch._foreach_lerp_(teacher, student, 1.0 - momentum)

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Teacher := student (DINO's initialization)."""
        for t_mod, s_mod in self._student_pairs():
            t_mod.load_state_dict(s_mod.state_dict())

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Core training hook after each optimizer step (`step`: steps taken so far, the trainer's global step).

        The EMA update after step `s` (1-based) uses DINO's momentum of iteration `s - 1`, so the first update
        uses `distill.momentum`; the teacher temperature is set for the next step.
        """
        if not self.distilling:
            return
        d = self.config.distill
        self.update_teacher(teacher_momentum(step - 1, total_steps, d.momentum, d.momentum_final))
        self.teacher_temp = teacher_temperature(step, total_steps, d)
        self.steps_done, self.total_steps = step, total_steps

    @property
    def last_layer_frozen(self) -> bool:
        """During the first `distill.freeze_last_layer` of training (from the first step, before the total is
        known), the student head's last layer gets zero gradients."""
        fraction = self.config.distill.freeze_last_layer
        return fraction > 0 and (self.total_steps == 0 or self.steps_done < fraction * self.total_steps)

    # ----------------------------------------------------------------------------------- forward
    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        images, text = batch["image"], batch["text"]
        globals_ = batch.get("global_crops")
        if not self.distilling or globals_ is None:
            if self.distilling and self.training:
                raise DataError(
                    "RS-M-CLIP trains with self-distillation but the batch has no 'global_crops': build the "
                    "training transform from the model config (get_transforms / RSMCLIPConfig.transform), "
                    "or set distill.enabled=false"
                )
            out = super().forward_batch(batch)
            out["contrastive_loss"] = out["loss"]
            return out
        locals_ = batch.get("local_crops")
        image_features, student_logits = self._student(images, globals_, locals_)
        text_features = self.encode_text(text)
        out: dict[str, torch.Tensor] = {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": self.scale(),
        }
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        contrastive = self.contrastive_loss_of(out)
        teacher_logits = self._teacher(globals_)
        distill = self.dino_loss(student_logits, teacher_logits, self.teacher_temp)
        if self.training:  # the centre follows the training batches only
            self.dino_loss.update_center(teacher_logits)
        out.update(
            loss=contrastive + self.config.distill.weight * distill,
            contrastive_loss=contrastive.detach(),
            distill_loss=distill.detach(),
            teacher_temp=torch.tensor(self.teacher_temp),
        )
        return out

    def _student(
        self, images: torch.Tensor, globals_: torch.Tensor, locals_: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized contrastive image features `[B, D]` and the head's logits on every crop `[V, B, K]`."""
        batch = images.shape[0]
        crops = _crop_major(globals_, "global_crops", batch)
        if crops.shape[1:] == images.shape[1:]:  # one pass over the contrastive view and the global crops
            embedded = self.visual(torch.cat([images, crops]))
            image_embed, crop_embed = embedded[:batch], embedded[batch:]
        else:
            image_embed, crop_embed = self.visual(images), self.visual(crops)
        if locals_ is not None and locals_.shape[1] > 0:
            crop_embed = torch.cat([crop_embed, self.visual(_crop_major(locals_, "local_crops", batch))])
        logits = self.student_head(crop_embed, freeze_last_layer=self.last_layer_frozen)
        return F.normalize(image_embed, dim=-1), logits.view(-1, batch, logits.shape[-1])

    @torch.no_grad()
    def _teacher(self, globals_: torch.Tensor) -> torch.Tensor:
        batch = globals_.shape[0]
        logits = self.teacher["head"](self.teacher["visual"](_crop_major(globals_, "global_crops", batch)))
        return logits.view(-1, batch, logits.shape[-1])


def _crop_major(crops: torch.Tensor, name: str, batch: int) -> torch.Tensor:
    """`[B, N, C, H, W]` → `[N * B, C, H, W]` ordered crop by crop, as DINO chunks its outputs."""
    if not torch.is_tensor(crops) or crops.ndim != 5 or crops.shape[0] != batch:
        shape = tuple(crops.shape) if torch.is_tensor(crops) else type(crops).__name__
        raise DataError(f"batch[{name!r}] must be a tensor [batch={batch}, crops, C, H, W], got {shape}")
    return crops.transpose(0, 1).reshape(-1, *crops.shape[2:])


def _sync_teacher_if_missing(module: RSMCLIP, incompatible: Any) -> None:
    """After loading weights without a teacher (a CLIP release), start the teacher as a copy of the student."""
    if any(k.startswith("teacher.") for k in incompatible.missing_keys):
        module.sync_teacher()


# ---------------------------------------------------------------------------------------- converter

_HF_BUFFERS = re.compile(r"\.(position_ids|token_type_ids)$")  # index buffers some transformers versions save


def from_open_clip_hf_text(state_dict: Mapping[str, torch.Tensor], model: nn.Module | None = None) -> dict:
    """open_clip `CustomTextCLIP` weights with a transformers text tower (`xlm-roberta-base-ViT-B-32` and
    its fine-tunes: `visual.*`, `text.transformer.*`, `text.proj.*`, `logit_scale`) → vlzoo keys.

    The ViT goes through the core's open_clip converter; the transformers encoder keeps its own key names
    (`text.transformer.*` in both); the projection (`text.proj`, a Linear or open_clip's 2-layer MLP) becomes
    `text.head`.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not any(k.startswith("text.transformer.") for k in sd) or not any(k.startswith("visual.") for k in sd):
        raise WeightsError(
            f"not an open_clip checkpoint with a transformers text tower (no text.transformer.* / visual.*): "
            f"{model_label(model, 'RS-M-CLIP')}"
        )
    visual = {k: v for k, v in sd.items() if k.startswith("visual.") or k in ("logit_scale", "logit_bias")}
    # The core converter recognizes open_clip by CLIP's token embedding, which this layout lacks: lend it
    # a placeholder and drop what it makes of it.
    visual["token_embedding.weight"] = torch.empty(0)
    out = {k: v for k, v in from_open_clip(visual, model).items() if not k.startswith("text.")}
    for key, value in sd.items():
        if key.startswith("text.transformer."):
            if not _HF_BUFFERS.search(key):
                out[key] = value
        elif key.startswith("text.proj."):
            out["text.head." + key.removeprefix("text.proj.")] = value
        elif not (key.startswith("visual.") or key in ("logit_scale", "logit_bias")):
            raise WeightsError(
                f"open_clip key {key!r} has no counterpart in vlzoo's {model_label(model, 'RS-M-CLIP')}"
            )
    return out


register_converter("open_clip_hf_text", from_open_clip_hf_text)

# ------------------------------------------------------------------------------------ registrations

RELEASE = "joaodaniel/RS-M-CLIP"
RELEASE_REVISION = "da9065164588daca743a39811e3ddc7c27f99f9e"
LAION_START = "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"
# The encoder's architecture comes from its transformers config; its weights come with the checkpoint.
_NO_HF_DOWNLOAD = {"text": {"hf_pretrained": False}}


@register_model(
    "rs-m-clip-vit-b-32",
    pretrained={
        "rs_m_clip": WeightSpec(
            hf_hub_id=RELEASE,
            revision=RELEASE_REVISION,
            filename="open_clip_model.safetensors",
            converter="open_clip_hf_text",
            config_overrides=_NO_HF_DOWNLOAD,
        ),
        # The multilingual CLIP that RS-M-CLIP fine-tunes (a torch pickle, read with weights_only=True).
        "laion5b_s13b_b90k": WeightSpec(
            hf_hub_id=LAION_START,
            filename="open_clip_pytorch_model.bin",
            format="pt",
            converter="open_clip_hf_text",
            config_overrides=_NO_HF_DOWNLOAD,
        ),
    },
    default_tag="rs_m_clip",
)
def rs_m_clip_vit_b_32() -> RSMCLIPConfig:
    """ViT-B/32 (224 px, any crop size through timm's dynamic image size) + XLM-RoBERTa-base, 512-d joint space;
    text pooled by the mean over real tokens and projected by open_clip's MLP (768 → 640 → 512), as in open_clip's
    `xlm-roberta-base-ViT-B-32`. The contrastive loss is local and gathered with gradients (exact under DDP)."""
    return RSMCLIPConfig(
        embed_dim=512,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch32_clip_224", timm_kwargs={"dynamic_img_size": True}
        ),
        text=TextTowerConfig(
            kind="hf", hf_model="xlm-roberta-base", context_length=77, pool="mean", head="mlp"
        ),
        loss_kwargs={"local_loss": True, "gather_with_grad": True},
    )


@register_model("rs-m-clip-tiny")
def rs_m_clip_tiny() -> RSMCLIPConfig:
    """RS-M-CLIP's training at CPU scale on rs-toyworld's four bands (B02, B03, B04, B08, normalized with its
    statistics): a 2-block ViT at 64 px, a small DINO head, 2 global + 2 local crops of 32 px.

    The text tower is the core's small CLIP text transformer with its offline BPE (byte-level, so it reads
    every script), not XLM-RoBERTa: no multilingual tokenizer can be had offline. The XLM-RoBERTa path is
    the full model's and is tested through the converter with a small encoder saved locally.
    """
    stats = rs_toyworld_band_stats(4)
    return RSMCLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch32_clip_224",
            timm_kwargs={
                "patch_size": 8,
                "embed_dim": 64,
                "depth": 2,
                "num_heads": 4,
                "dynamic_img_size": True,
            },
            image_size=64,
            in_chans=4,
            mean=stats.mean,
            std=stats.std,
        ),
        text=TextTowerConfig(kind="clip", context_length=32, width=64, heads=4, layers=2),
        distill=SelfDistillConfig(out_dim=256, hidden_dim=128, bottleneck_dim=64),
        crops=MultiCropConfig(local_crops=2, local_size=32),
    )
