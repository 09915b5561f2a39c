"""Per-pixel cross-entropy on logits upsampled to the label size (SegFormer's loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PixelCrossEntropy(nn.Module):
    """logits [B, C, h, w] (any resolution), labels [B, H, W] class ids; ignore_index pixels do not count.

    Logits are upsampled bilinearly (align_corners=False) to [H, W] before the loss, as
    transformers' SegformerForSemanticSegmentation does. With C == 1 the loss is binary CE
    averaged over all pixels with ignored ones zeroed, as there.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        upsampled = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        if upsampled.shape[1] > 1:
            ce = F.cross_entropy(upsampled, labels.long(), ignore_index=self.ignore_index)
        else:
            valid = ((labels >= 0) & (labels != self.ignore_index)).float()
            bce = F.binary_cross_entropy_with_logits(upsampled.squeeze(1), labels.float(), reduction="none")
            ce = (bce * valid).mean()
        return {"loss": ce, "loss_ce": ce.detach()}
