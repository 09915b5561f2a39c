"""DETR detection head: class linear (+ no-object) and 3-layer box MLP, shared across decoder layers."""

from __future__ import annotations

import torch
from torch import nn


class DetectionHead(nn.Module):
    """Per-query class logits and normalised boxes for every decoder layer.

    The same weights score every layer, as in DETR, so auxiliary decoding losses train the
    shared head too. Layout matches transformers' DetrForObjectDetection
    (``class_labels_classifier`` / ``bbox_predictor``), so its weights load by renaming.
    """

    def __init__(self, in_features: int, num_classes: int, box_hidden: int | None = None) -> None:
        """in_features: decoder hidden size D; num_classes: C real classes (no-object is added);
        box_hidden: box MLP width (default D)."""
        super().__init__()
        hidden = box_hidden or in_features
        self.num_classes = num_classes
        self.class_head = nn.Linear(in_features, num_classes + 1)
        self.box_mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 4),
        )

    def forward(self, decoder_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """decoder_states: [L, B, Q, D] per-layer query states, or [B, Q, D] (taken as L = 1).

        Returns (logits [L, B, Q, C+1], boxes [L, B, Q, 4] cxcywh in (0, 1)); index -1 is the last layer.
        """
        if decoder_states.dim() == 3:
            decoder_states = decoder_states.unsqueeze(0)
        if decoder_states.dim() != 4:
            raise ValueError(f"decoder_states must be [L, B, Q, D] or [B, Q, D], got {tuple(decoder_states.shape)}")
        return self.class_head(decoder_states), self.box_mlp(decoder_states).sigmoid()
