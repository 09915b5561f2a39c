"""CTC head: a linear projection of every frame onto the character vocabulary (blank included)."""

from __future__ import annotations

import torch
from torch import nn


class CtcHead(nn.Module):
    """hidden_states [B, F, D] -> logits [B, F, num_classes] (the blank is one of the classes)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(hidden_states))
