"""Knowledge distillation between logits (Hinton et al. 2015, https://arxiv.org/abs/1503.02531)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import check_finite

__all__ = ["DistillationLoss"]


class DistillationLoss(nn.Module):
    """``tau² · KL(softmax(teacher / tau) || softmax(student / tau))``, averaged over rows.

    Works for teacher-student models and self-distillation (an EMA or earlier copy of the model as
    teacher). The teacher is detached: it is a target, never trained by this loss.

    The ``tau²`` factor follows Hinton et al.: the gradient of the softened KL w.r.t. the student
    logits scales as ``1 / tau²``, so multiplying by ``tau²`` keeps its magnitude independent of the
    temperature and lets the loss be mixed with a hard-label loss without retuning the weight.

    Rows are all leading dims: logits of shape [..., C] are flattened to [N, C] and the sum over
    classes is averaged over the N rows (``reduction="batchmean"`` semantics).
    """

    def __init__(self, temperature: float = 1.0, *, check_inputs: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.check_inputs = check_inputs

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, output_dict: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Distillation loss of ``student_logits`` towards ``teacher_logits`` (same shape [..., C])."""
        for tensor, name in ((student_logits, "student_logits"), (teacher_logits, "teacher_logits")):
            if not isinstance(tensor, torch.Tensor) or tensor.dim() < 1 or tensor.numel() == 0:
                shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise ConfigError(f"{name} must be a non-empty tensor of shape [..., C], got {shape}")
        if student_logits.shape != teacher_logits.shape:
            raise ConfigError(
                f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                f"{tuple(teacher_logits.shape)} must have the same shape"
            )
        if self.check_inputs:
            check_finite(student_logits, "student_logits")
            check_finite(teacher_logits, "teacher_logits")
        tau = self.temperature
        classes = student_logits.shape[-1]
        student = F.log_softmax(student_logits.reshape(-1, classes) / tau, dim=-1)
        teacher = F.log_softmax(teacher_logits.detach().reshape(-1, classes) / tau, dim=-1)
        # log_target keeps the teacher in log space: exact even where its probabilities underflow.
        loss = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau**2
        return {"distill_loss": loss} if output_dict else loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
