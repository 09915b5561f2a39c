"""Linear classification head on a pooled vector."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """pooled [B, D] -> logits [B, num_classes]: dropout, one linear layer.

    pre_classifier: first a D -> D linear layer and ReLU (DistilBERT's sequence-classification
    head, ``DistilBertForSequenceClassification.pre_classifier``).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0, pre_classifier: bool = False) -> None:
        super().__init__()
        if pre_classifier:
            self.pre_classifier = nn.Linear(in_features, in_features)
            nn.init.trunc_normal_(self.pre_classifier.weight, std=0.02)
            nn.init.zeros_(self.pre_classifier.bias)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "pre_classifier"):
            pooled = torch.relu(self.pre_classifier(pooled))
        return self.proj(self.dropout(pooled))
