"""CTC loss as a headstart loss (same computation as transformers' ``Wav2Vec2ForCTC``)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class CtcLoss(nn.Module):
    """logits [B, F, V], frame_lengths [B], labels [B, S] (padding ignored), label_lengths [B].

    reduction: ``mean`` divides each example's loss by its label length, then averages
    (torch's and HF's ``mean``); ``sum`` adds them. ``zero_infinity`` zeroes impossible
    alignments (a transcript longer than its frames) instead of returning inf.
    """

    def __init__(self, blank: int = 0, zero_infinity: bool = True, reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__()
        self.blank = blank
        self.zero_infinity = zero_infinity
        self.reduction = reduction

    def forward(
        self, logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor, label_lengths: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [F, B, V]
        valid = torch.arange(labels.shape[1], device=labels.device)[None, :] < label_lengths[:, None]
        targets = labels.masked_select(valid)  # concatenated targets: cuDNN-friendly layout
        with torch.backends.cudnn.flags(enabled=False):  # as HF: cuDNN's CTC differs in edge cases
            ctc = F.ctc_loss(
                log_probs, targets, frame_lengths, label_lengths, blank=self.blank,
                reduction=self.reduction, zero_infinity=self.zero_infinity,
            )  # fmt: skip
        return {"loss": ctc, "ctc": ctc.detach()}
