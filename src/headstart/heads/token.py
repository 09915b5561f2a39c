"""Per-token classification head (NER, POS tagging)."""

from __future__ import annotations

import torch
from torch import nn


class TokenClassificationHead(nn.Module):
    """hidden_states [B, L, D] -> logits [B, L, num_classes]: dropout then one linear per token.

    Same computation as transformers' ``*ForTokenClassification`` on top of the encoder.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, num_classes)
        nn.init.trunc_normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden_states))
