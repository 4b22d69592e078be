"""`ZooModule`: any registered model trained with Lightning (contrastive, ITM, MLM, DINO: the model decides).

The module knows nothing of a model's objectives: it calls `model(batch)`, minimizes the returned
`"loss"` and logs every other scalar. What else it asks of a model is the contract's capabilities
(:mod:`vlzoo.core.models.contract`): `set_loss` for a recipe's `loss:`, `lock_*_tower`,
`set_grad_checkpointing` (each refused with a `ConfigError` when the model lacks it), the step hook
`on_train_step_end(step, total_steps)` and `retrieval_features(batch)` for validation and test retrieval.

Validation and test are retrieval (image-text recall) unless the model measures itself: a model with
`validation_metrics(batch) -> {name: scalar tensor}` (the batch's mean, e.g. a recognizer's word accuracy)
gets those logged as `val/<name>` (`test/<name>`), averaged over the epoch weighted by batch size and
across ranks, so a recipe can checkpoint on them (`ModelCheckpoint(monitor="val/accuracy", mode="max")`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.eval.features import encode_pair_batch
from vlzoo.core.eval.retrieval import retrieval_metrics
from vlzoo.core.losses import DistributedLossBase, build_loss
from vlzoo.core.models.contract import require_capability
from vlzoo.core.registry import create_model
from vlzoo.core.train.callbacks import ExportWeights, SkippedSamplesMonitor
from vlzoo.core.train.schedule import warmup_cosine


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stops, the checkpoints on disk are the last good ones."""


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names the modules themselves exempt from decay (`no_weight_decay()`, as timm's ViT declares)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names |= {f"{prefix}.{n}" if prefix else n for n in fn()}
    return names


def param_groups(
    model: nn.Module, weight_decay: float, lr: float, tower_lr: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """AdamW groups: decay only on weight matrices (not norms, biases, embeddings, temperatures).

    `tower_lr` maps a parameter-name prefix (`"visual"`, `"text"`) to its own learning rate.
    """
    exempt = _no_weight_decay_names(model)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    tower_lr = dict(tower_lr or {})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2 and id(param) not in embeddings and name not in exempt
        group_lr = next((v for k, v in tower_lr.items() if name == k or name.startswith(k + ".")), lr)
        groups.setdefault((group_lr, decay), []).append(param)
    return [
        {"params": params, "lr": group_lr, "weight_decay": weight_decay if decay else 0.0}
        for (group_lr, decay), params in groups.items()
    ]


# recipe key -> the capability it needs (vlzoo.core.models.contract): asked of a model without it, a
# recipe fails before training with the key and the model named, never with a silent no-op.
_RECIPE_CAPABILITIES = {
    "model.loss": "replaceable_loss",
    "model.lock_image_tower": "lockable_image_tower",
    "model.lock_text_tower": "lockable_text_tower",
    "model.grad_checkpointing": "grad_checkpointing",
}


def _apply_recipe_options(
    model: nn.Module,
    name: str,
    loss: dict[str, Any] | None,
    lock_image_tower: int | None,
    lock_text_tower: int | None,
    grad_checkpointing: bool,
) -> None:
    """Check every option against the model's capabilities first, then apply them."""
    asked = {
        "model.loss": loss is not None,
        "model.lock_image_tower": lock_image_tower is not None,
        "model.lock_text_tower": lock_text_tower is not None,
        "model.grad_checkpointing": grad_checkpointing,
    }
    for key in (k for k, on in asked.items() if on):
        require_capability(model, _RECIPE_CAPABILITIES[key], key=key, model_name=name)
    if loss is not None:
        model.set_loss(build_loss(**loss))
    if lock_image_tower is not None:
        model.lock_image_tower(unlocked_groups=lock_image_tower)
    if lock_text_tower is not None:
        model.lock_text_tower(unlocked_layers=lock_text_tower)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)


class ZooModule(L.LightningModule):
    """Trains a registered vlzoo model.

    Args:
        model: registered name (`vlzoo list`).
        model_overrides: config changes, checked against the model's config dataclass.
        pretrained: a tag, file or `hf-hub:` name to start from.
        loss: replace the model's contrastive loss through its `set_loss`, e.g. `{"name": "siglip"}`.
        lr, weight_decay, betas, eps: AdamW.
        tower_lr: learning rate per parameter-name prefix, e.g. `{"text": 1e-5}` to fine-tune the text
            tower gently.
        fused: AdamW's fused kernel (torch's `fused=True`, CPU or CUDA): one pass over every parameter
            instead of a loop of per-tensor ops; on the CPU it makes the step over a large token table
            (CLIP's 49408 rows) about 10× cheaper.
        warmup_steps, min_lr_ratio: linear warmup then cosine decay to `lr * min_lr_ratio`.
        ema_decay: keep an exponential moving average of the weights (used for validation and export).
        compile: `torch.compile` the model.
        lock_image_tower / lock_text_tower: LiT-style freezing, the number of groups/layers left unlocked.
        grad_checkpointing: trade compute for activation memory.
        max_skip_rate: stop when more than this fraction of the samples were unreadable.
        export_weights: write `model.safetensors` + `model.json` into the run directory after `fit`.
    """

    def __init__(
        self,
        model: str = "clip-vit-tiny",
        model_overrides: dict[str, Any] | None = None,
        pretrained: str | None = None,
        loss: dict[str, Any] | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        tower_lr: dict[str, float] | None = None,
        fused: bool = False,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        ema_decay: float | None = None,
        compile: bool = False,
        lock_image_tower: int | None = None,
        lock_text_tower: int | None = None,
        grad_checkpointing: bool = False,
        max_skip_rate: float = 0.01,
        export_weights: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay must be in (0, 1), got {ema_decay}")
        if warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
        self.model = create_model(model, pretrained=pretrained, **(model_overrides or {}))
        _apply_recipe_options(self.model, model, loss, lock_image_tower, lock_text_tower, grad_checkpointing)
        if compile:
            self.model.compile()
        self._eval_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._hooked_step = -1

    # ------------------------------------------------------------------------------------------- fit
    def setup(self, stage: str) -> None:
        # Losses gather across the Trainer's ranks, whatever process group the strategy set up. Their input
        # checks are turned off: a diverging run is caught once per step on the loss, with the resume advice.
        for module in self.model.modules():
            if isinstance(module, DistributedLossBase):
                module.rank, module.world_size = self.global_rank, self.trainer.world_size
            if hasattr(module, "check_inputs"):
                module.check_inputs = False

    def on_train_epoch_start(self) -> None:
        # Streaming sources reshuffle per epoch only when told which epoch it is (shared with workers).
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if len(batch["image"]) == 0:  # every sample of the batch was unreadable: nothing to learn from
            return None
        out = self.model(batch)
        if "loss" not in out:
            raise ConfigError(f"{type(self.model).__name__}(batch) returned no 'loss' (keys: {sorted(out)})")
        loss = out["loss"]
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); training "
                "stopped. The checkpoints on disk predate it: resume from the last one with a lower learning "
                "rate or stronger gradient clipping."
            )
        scalars = {
            f"train/{k}": v.detach().float()
            for k, v in out.items()
            if torch.is_tensor(v) and v.ndim == 0 and k != "loss"
        }
        self.log_dict(scalars, batch_size=len(batch["image"]))
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def on_train_start(self) -> None:
        self._hooked_step = self.global_step  # a resumed run starts counting where it stopped

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Once per optimizer step (not per accumulated micro-batch), after the weights moved.
        hook = getattr(self.model, "on_train_step_end", None)
        if callable(hook) and self.global_step > self._hooked_step:
            self._hooked_step = self.global_step
            hook(self.global_step, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self):
        hp = self.hparams
        groups = param_groups(self.model, hp.weight_decay, hp.lr, hp.tower_lr)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, fused=hp.fused)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            raise ConfigError(
                "the learning-rate schedule needs the number of training steps: set trainer.max_steps, or "
                "data.epoch_length for streamed shards (which have no length of their own)"
            )
        scheduler = warmup_cosine(optimizer, hp.warmup_steps, int(total), hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[L.Callback]:
        callbacks: list[L.Callback] = [SkippedSamplesMonitor(self.hparams.max_skip_rate)]
        if self.hparams.export_weights:
            callbacks.append(ExportWeights())
        if self.hparams.ema_decay is not None:
            from lightning.pytorch.callbacks import EMAWeightAveraging

            callbacks.append(EMAWeightAveraging(decay=self.hparams.ema_decay))
        return callbacks

    # ------------------------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Mapping[str, Any]) -> None:
        images, texts = encode_pair_batch(self.model, batch)
        owner = batch.get("text_to_image")
        if owner is None:  # one caption per image
            owner = torch.arange(len(images), device=images.device)
        self._eval_outputs.append((images, texts, owner))

    def _own_metrics_step(self, stage: str, batch: Mapping[str, Any]) -> bool:
        """Log the model's own `validation_metrics(batch)` when it has them; False when it has none."""
        measure = getattr(self.model, "validation_metrics", None)
        if not callable(measure):
            return False
        size = len(batch["image"]) if "image" in batch else len(next(iter(batch.values())))
        if size == 0:  # every sample of the batch was unreadable
            return True
        metrics = measure(batch)
        bad = [k for k, v in metrics.items() if not (torch.is_tensor(v) and v.numel() == 1)]
        if bad:
            raise ConfigError(
                f"{type(self.model).__name__}.validation_metrics returned non-scalar values for {bad}: it "
                "returns {name: scalar tensor}, the batch's mean"
            )
        # Lightning's epoch reduction is the batch-size-weighted mean, synced over ranks.
        values = {f"{stage}/{k}": v.detach().float().reshape(()) for k, v in metrics.items()}
        self.log_dict(values, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return True

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not self._own_metrics_step("val", batch):
            self._eval_step(batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not self._own_metrics_step("test", batch):
            self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_retrieval("val")

    def on_test_epoch_end(self) -> None:
        self._log_retrieval("test")

    def _log_retrieval(self, stage: str) -> None:
        if not self._eval_outputs:
            return
        images, texts, owners = self._collect()
        self._eval_outputs.clear()
        metrics = retrieval_metrics(images.float(), texts.float(), owners)
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, rank_zero_only=True)
        self.last_retrieval_metrics = {stage: metrics}

    def _collect(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ranks' features; caption owners re-indexed into the concatenated image gallery."""
        images, texts, owners, offset = [], [], [], 0
        for img, txt, owner in self._eval_outputs:
            images.append(img)
            texts.append(txt)
            owners.append(owner + offset)
            offset += len(img)
        images, texts, owners = torch.cat(images), torch.cat(texts), torch.cat(owners)
        if self.trainer.world_size > 1:
            sizes = _gather_varlen(self, torch.tensor([len(images)], device=images.device)).view(-1)
            offsets = torch.cumsum(sizes, 0) - sizes
            owners = owners + offsets[self.global_rank]
            images, texts, owners = (_gather_varlen(self, t) for t in (images, texts, owners))
        return images, texts, owners


def _gather_varlen(module: L.LightningModule, x: torch.Tensor) -> torch.Tensor:
    """`all_gather` of tensors whose first dimension differs between ranks (pad, gather, trim)."""
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = module.all_gather(n).view(-1)
    padded = x.new_zeros((int(sizes.max()), *x.shape[1:]))
    padded[: x.shape[0]] = x
    gathered = module.all_gather(padded)
    return torch.cat([gathered[r, : int(s)] for r, s in enumerate(sizes)])
