"""Cross-entropy as a headstart loss: named terms plus the total under ``loss``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """logits [N, C] (or [B, C, ...]), target [N] class ids (or [B, ...]); -100 is ignored."""

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(
            logits.float(), target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )
        return {"loss": ce, "ce": ce.detach()}
