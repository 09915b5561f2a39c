"""Extractive QA loss: cross-entropy on the start and on the end position, averaged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpanCrossEntropy(nn.Module):
    """start_logits, end_logits [B, L]; start_positions, end_positions [B] token indices.

    Positions outside the sequence (truncation) are clamped to L and ignored, as transformers'
    ``*ForQuestionAnswering`` does; the total is (start CE + end CE) / 2.
    """

    def forward(
        self, start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        ignored = start_logits.shape[1]
        start = F.cross_entropy(start_logits.float(), start_positions.clamp(0, ignored), ignore_index=ignored)
        end = F.cross_entropy(end_logits.float(), end_positions.clamp(0, ignored), ignore_index=ignored)
        return {"loss": (start + end) / 2, "start_ce": start.detach(), "end_ce": end.detach()}
