"""Panoptic-form ground truth (segment id map + class per segment) -> the targets of each mode.

seg_ids: [H, W] int64, 0 = void, segment k + 1 has class labels[k] (crowd[k] marks crowd regions).
"""

from __future__ import annotations

from typing import Literal

import torch

Mode = Literal["semantic", "instance", "panoptic"]


def segment_masks(seg_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """[H, W] ids -> [N, H, W] bool, mask k for segment k + 1."""
    ids = torch.arange(1, num_segments + 1, device=seg_ids.device)
    return seg_ids[None] == ids[:, None, None]


def mask_targets(
    seg_ids: torch.Tensor, labels: torch.Tensor, crowd: torch.Tensor, mode: Mode, things: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Targets of a mask-classification model: {"class_labels": [T], "masks": [T, H, W] float}.

    semantic: one mask per class present; instance: each non-crowd segment of a thing class;
    panoptic: each non-crowd segment (stuff segments of one class merged into one mask).
    Empty masks (segments cropped away) are dropped.
    """
    labels = labels.to(seg_ids.device)
    masks = segment_masks(seg_ids, len(labels))
    keep = masks.flatten(1).any(1) & ~crowd.to(seg_ids.device)
    if mode == "instance":
        keep &= torch.isin(labels, things.to(labels.device))
    if mode == "semantic" or mode == "panoptic":
        # One mask per class: all of its segments (semantic), or its stuff segments (panoptic).
        merge = keep if mode == "semantic" else keep & ~torch.isin(labels, things.to(labels.device))
        classes = labels[merge].unique()
        merged = torch.stack([masks[merge & (labels == c)].any(0) for c in classes]) if len(classes) else masks[:0]
        separate = keep & ~merge
        return {
            "class_labels": torch.cat([classes, labels[separate]]),
            "masks": torch.cat([merged, masks[separate]]).float(),
        }
    return {"class_labels": labels[keep], "masks": masks[keep].float()}


def instance_ground_truth(
    seg_ids: torch.Tensor, labels: torch.Tensor, crowd: torch.Tensor, things: torch.Tensor
) -> dict[str, torch.Tensor]:
    """torchmetrics MeanAveragePrecision(iou_type="segm") target: masks [T, H, W] bool, labels [T], iscrowd [T]."""
    masks = segment_masks(seg_ids, len(labels))
    keep = masks.flatten(1).any(1) & torch.isin(labels.to(seg_ids.device), things.to(seg_ids.device))
    return {"masks": masks[keep], "labels": labels.to(seg_ids.device)[keep], "iscrowd": crowd.to(seg_ids.device)[keep].long()}


def panoptic_pairs(seg_ids: torch.Tensor, labels: torch.Tensor, void_class: int) -> torch.Tensor:
    """[H, W] ids -> [H, W, 2] (class, instance id) as torchmetrics' PanopticQuality reads it; void -> void_class."""
    lut = torch.cat([torch.tensor([void_class], device=seg_ids.device), labels.to(seg_ids.device)])
    return torch.stack([lut[seg_ids], seg_ids], dim=-1)
