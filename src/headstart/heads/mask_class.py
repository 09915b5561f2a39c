"""Class head of a mask-classification model: one linear layer shared by every decoder layer's queries."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MaskClassHead(nn.Module):
    """Query states -> class logits over num_classes + 1 ("no object" is the last class).

    Same layer as transformers' Mask2FormerForUniversalSegmentation.class_predictor, so its
    weights load directly (``head.proj.load_state_dict(model.class_predictor.state_dict())``).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, num_classes + 1)

    def forward(self, query_states: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """query_states: [L, B, Q, D], L tensors [B, Q, D], or one [B, Q, D] -> [L, B, Q, C+1] ([B, Q, C+1])."""
        if not isinstance(query_states, torch.Tensor):
            query_states = torch.stack(list(query_states))
        return self.proj(query_states)
