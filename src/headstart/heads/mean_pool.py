"""Masked mean pooling over frames followed by a linear classifier (audio classification)."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """hidden_states [B, F, D], mask [B, F] (1 = valid) -> [B, D] mean over valid frames only."""
    if mask is None:
        return hidden_states.mean(1)
    weights = mask.to(hidden_states.dtype).unsqueeze(-1)  # [B, F, 1]
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MeanPoolHead(nn.Module):
    """hidden_states [B, F, D], mask [B, F] -> logits [B, num_classes]; padding never enters the mean."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.dropout(masked_mean(hidden_states, mask)))
