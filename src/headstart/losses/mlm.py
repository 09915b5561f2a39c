"""BERT's pretraining loss: CE over the masked positions (+ next-sentence CE), as BertForPreTraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLMLoss(nn.Module):
    """mlm_logits [N, V] at the N selected positions, mlm_targets [N] their original ids;
    nsp_logits [B, 2] and nsp_labels [B] (0: B follows A) when NSP is on.

    loss = mean CE over the N positions + nsp_weight * mean NSP CE. With nsp_weight=1 this is
    ``BertForPreTraining``'s loss (CE over all positions with -100 ignored equals the mean over
    the selected ones).
    """

    def __init__(self, nsp_weight: float = 1.0) -> None:
        super().__init__()
        self.nsp_weight = nsp_weight

    def forward(
        self,
        mlm_logits: torch.Tensor,
        mlm_targets: torch.Tensor,
        nsp_logits: torch.Tensor | None = None,
        nsp_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        # a batch without any selected token (all skipped, or tiny blocks) contributes nothing, not NaN
        mlm = F.cross_entropy(mlm_logits.float(), mlm_targets) if mlm_targets.numel() else mlm_logits.sum() * 0.0
        terms = {"loss": mlm, "mlm_loss": mlm.detach()}
        if nsp_logits is not None and nsp_labels is not None:
            nsp = F.cross_entropy(nsp_logits.float(), nsp_labels)
            terms.update(loss=mlm + self.nsp_weight * nsp, nsp_loss=nsp.detach())
        return terms
