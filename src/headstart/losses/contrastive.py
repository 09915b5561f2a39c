"""wav2vec 2.0's contrastive objective: find the true quantized latent among K distractors.

For every masked step t of an utterance, the context vector c_t (transformer output through
``project_hid``) is compared by cosine similarity / temperature with the true quantized latent
q_t (through ``project_q``) and with K distractors: the quantized latents of other *masked* steps
of the same utterance (never t itself, never padding). Cross-entropy puts the positive at index 0;
a distractor identical to the positive gets logit -inf (as fairseq and transformers do). Plus the
codebook diversity loss (G*V - perplexity) / (G*V) and fairseq's feature penalty (mean square of
the conv features).

Reduction: ``mean`` (default) averages the contrastive CE over masked steps, and the total is
``contrastive + diversity_weight * diversity + feature_penalty_weight * penalty`` (fairseq's
per-step normalisation by sample size). ``sum`` gives transformers' ``Wav2Vec2ForPreTraining``
loss exactly (CE summed over masked steps, diversity and penalty times the number of masked steps).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def sample_negatives(mask: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """mask [B, F] bool (masked steps) -> [B, F, K] indices into the flattened [B * F] steps.

    Row b's distractors are drawn uniformly, with replacement, from the *other* masked steps of
    row b (the self index is skipped by shifting, so the draw stays uniform, as transformers'
    ``_sample_negative_indices``). Entries at unmasked steps are meaningless (0 offset of the row);
    a row with a single masked step can only point at itself (its logits are then all -inf but the
    positive). Runs on the mask's device without host syncs.
    """
    batch, frames = mask.shape
    counts = mask.sum(1)  # [B]
    rank = mask.long().cumsum(1) - 1  # [B, F] rank of each masked step within its row
    # masked positions first, in time order: order[b, r] = position of the r-th masked step
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    u = torch.rand(batch, frames, num_negatives, device=mask.device, generator=generator)
    draw = (u * (counts - 1).clamp(min=1)[:, None, None]).long()  # [0, n-2]
    draw = draw + (draw >= rank[..., None].clamp(min=0)).long()  # skip self -> [0, n-1] \ {rank}
    draw = torch.minimum(draw, (counts - 1).clamp(min=0)[:, None, None])
    positions = torch.gather(order, 1, draw.view(batch, -1)).view(batch, frames, num_negatives)
    return positions + torch.arange(batch, device=mask.device)[:, None, None] * frames


def contrastive_logits(predicted: torch.Tensor, targets: torch.Tensor, negative_index: torch.Tensor, temperature: float) -> torch.Tensor:
    """predicted [B, F, P] (c_t), targets [B, F, P] (q_t), negative_index [B, F, K] -> logits [1+K, B, F].

    Index 0 is the positive; distractors identical to the positive are -inf.
    """
    batch, frames, dim = targets.shape
    negatives = targets.reshape(-1, dim)[negative_index.reshape(-1)].view(batch, frames, -1, dim).permute(2, 0, 1, 3)
    candidates = torch.cat([targets[None], negatives], dim=0)  # [1+K, B, F, P]
    logits = torch.cosine_similarity(predicted.float(), candidates.float(), dim=-1).type_as(targets) / temperature
    same = (targets[None] == negatives).all(-1)  # [K, B, F]
    return torch.cat([logits[:1], logits[1:].masked_fill(same, float("-inf"))], dim=0)


class Wav2Vec2ContrastiveLoss(nn.Module):
    """Terms of the wav2vec 2.0 objective (see the module docstring).

    Call with logits [1+K, B, F], mask [B, F] bool (masked, valid steps), the quantizer's
    perplexity (scalar), num_codevectors (G*V) and the feature penalty (scalar). Returns
    {"loss", "contrastive_loss" (mean CE per masked step), "diversity_loss", "feature_penalty",
    "contrastive_acc" (share of masked steps whose positive is ranked first), "num_masked"}.
    """

    def __init__(
        self,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> None:
        super().__init__()
        self.diversity_weight, self.feature_penalty_weight = diversity_weight, feature_penalty_weight
        self.reduction = reduction

    def forward(
        self, logits: torch.Tensor, mask: torch.Tensor, perplexity: torch.Tensor, num_codevectors: int,
        feature_penalty: torch.Tensor,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        scores = logits.permute(1, 2, 0)[mask]  # [M, 1+K] over masked steps
        count = mask.sum()
        ce_sum = nn.functional.cross_entropy(scores.float(), scores.new_zeros(len(scores), dtype=torch.long), reduction="sum")
        diversity = (num_codevectors - perplexity) / num_codevectors
        scale = count.float() if self.reduction == "sum" else count.new_ones((), dtype=torch.float)
        contrastive = ce_sum / count.clamp(min=1)
        total = (ce_sum if self.reduction == "sum" else contrastive) + scale * (
            self.diversity_weight * diversity + self.feature_penalty_weight * feature_penalty
        )
        correct = (scores.argmax(-1) == 0).float().sum()
        return {
            "loss": total,
            "contrastive_loss": contrastive,
            "diversity_loss": diversity,
            "feature_penalty": feature_penalty,
            "contrastive_acc": correct / count.clamp(min=1),
            "num_masked": count.float(),
        }
