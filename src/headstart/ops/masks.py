"""Mask losses and overlaps: dice and sigmoid cross-entropy (per mask and pairwise), mask IoU.

Inputs are logits and {0, 1} labels flattened to points or pixels: [N, P]. Pairwise versions
take any leading batch dims, so one call scores every query against every target of a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: torch.Tensor | float) -> torch.Tensor:
    """Sum over masks of 1 - (2|x*y| + 1) / (|x| + |y| + 1), divided by num_masks.

    logits: [N, P] (or [N, ...], flattened). labels: same shape, in {0, 1}. Returns a scalar.
    """
    probs = logits.sigmoid().flatten(1)
    labels = labels.flatten(1)
    numerator = 2 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: torch.Tensor | float) -> torch.Tensor:
    """Per-mask mean of binary CE over points, summed over masks, divided by num_masks.

    logits: [N, P]. labels: [N, P] in {0, 1}. Returns a scalar.
    """
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return ce.mean(1).sum() / num_masks


def pairwise_dice_cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction against every target.

    logits: [..., Q, P]. labels: [..., T, P] in {0, 1}. Returns [..., Q, T].
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ labels.transpose(-1, -2)
    denominator = probs.sum(-1).unsqueeze(-1) + labels.sum(-1).unsqueeze(-2)
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_ce_cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary CE over points of every prediction against every target.

    logits: [..., Q, P]. labels: [..., T, P] in {0, 1}. Returns [..., Q, T].
    """
    num_points = logits.shape[-1]
    # CE(x, y) = y * CE(x, 1) + (1 - y) * CE(x, 0): two matmuls instead of a [Q, T, P] tensor.
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    labels_t = labels.transpose(-1, -2)
    return (pos / num_points) @ labels_t + (neg / num_points) @ (1 - labels_t)


def mask_iou(masks_a: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    """IoU of every mask in a against every mask in b.

    masks_a: [N, H, W] bool. masks_b: [M, H, W] bool. Returns [N, M] float; 0 where both are empty.
    """
    a = masks_a.flatten(1).float()
    b = masks_b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """Number of foreground pixels per mask. masks: [N, H, W] bool -> [N] int64."""
    return masks.flatten(1).sum(1)
