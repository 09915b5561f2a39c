"""Extractive question answering head: start and end logits per token."""

from __future__ import annotations

import torch
from torch import nn


class SpanHead(nn.Module):
    """hidden_states [B, L, D] -> (start_logits [B, L], end_logits [B, L]).

    One linear layer to 2 outputs, as transformers' ``*ForQuestionAnswering``. Positions outside the
    context are not masked here: the caller knows which they are (keep [CLS] unmasked, it carries
    the "no answer" score for SQuAD v2).
    """

    def __init__(self, in_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.qa_outputs = nn.Linear(in_features, 2)
        nn.init.trunc_normal_(self.qa_outputs.weight, std=0.02)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(self.dropout(hidden_states))  # [B, L, 2]
        start_logits, end_logits = logits.unbind(dim=-1)
        return start_logits.contiguous(), end_logits.contiguous()
