"""Binary cross-entropy over independent labels (multi-label classification)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BinaryCrossEntropy(nn.Module):
    """logits [B, K], target [B, K] multi-hot in {0, 1}; mean over labels and examples."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weight)
        return {"loss": bce, "bce": bce.detach()}
