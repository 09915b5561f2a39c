"""Mask-classification outputs -> semantic maps, scored instance masks, panoptic segments.

Inputs are the final layer's class logits [B, Q, C+1] (last class = no object) and mask
logits [B, Q, h, w]; results are at each image's original size (target_sizes). Semantics
follow Mask2Former's inference (facebookresearch/Mask2Former, maskformer_model.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, h, w] -> [N, H, W], bilinear (a no-op at the same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[0] == 0:  # nothing kept: interpolate rejects empty inputs
        return x.new_zeros(0, *size)
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def semantic_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-class pixel scores: sum over queries of p(class) * sigmoid(mask). -> [B, C, h, w]."""
    class_probs = class_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", class_probs, mask_logits.float().sigmoid())


def semantic_segmentation(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, target_sizes: list[tuple[int, int]]
) -> list[torch.Tensor]:
    """Class id per pixel at each image's size: B tensors [H_b, W_b] int64."""
    scores = semantic_scores(class_logits, mask_logits)
    return [_resize(scores[b], size).argmax(0) for b, size in enumerate(target_sizes)]


def instance_segmentation(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target_sizes: list[tuple[int, int]],
    top_k: int | None = None,
    score_threshold: float = 0.0,
    mask_threshold: float = 0.5,
) -> list[dict[str, torch.Tensor]]:
    """Best top_k (query, class) pairs per image (default Q), each a scored binary mask.

    score = p(class) * mean mask probability inside the binarised mask. Pairs whose mask is
    empty or whose score is below score_threshold are dropped.
    Returns per image {"masks": [K, H, W] bool, "scores": [K], "labels": [K] int64}, best first
    (the format of torchmetrics' MeanAveragePrecision(iou_type="segm")).
    """
    num_queries, num_classes = class_logits.shape[1], class_logits.shape[2] - 1
    k = min(top_k or num_queries, num_queries * num_classes)
    probs = class_logits.float().softmax(-1)[..., :-1].flatten(1)  # [B, Q*C]
    top_scores, top_idx = probs.topk(k, dim=1)  # [B, K], best first
    results = []
    for b, size in enumerate(target_sizes):
        queries = torch.div(top_idx[b], num_classes, rounding_mode="floor")
        mask_probs = _resize(mask_logits[b, queries].float(), size).sigmoid()  # [K, H, W]
        masks = mask_probs > mask_threshold
        flat = masks.flatten(1)
        mask_score = (mask_probs.flatten(1) * flat).sum(1) / (flat.sum(1) + 1e-6)
        scores = top_scores[b] * mask_score
        keep = flat.any(1) & (scores >= score_threshold)
        results.append(
            {"masks": masks[keep], "scores": scores[keep], "labels": (top_idx[b] % num_classes)[keep]}
        )
    return results


def panoptic_segmentation(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target_sizes: list[tuple[int, int]],
    score_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    mask_threshold: float = 0.5,
    label_ids_to_fuse: Iterable[int] = (),
) -> list[dict]:
    """Non-overlapping segments per image.

    Queries predicting "no object" or scoring <= score_threshold are dropped; each pixel goes
    to the query with the highest p(class) * mask prob; a query keeps its pixels (those also
    above mask_threshold in its own mask) only if it wins at least overlap_threshold of its
    own mask's area. Queries of a class in label_ids_to_fuse (stuff) share one segment.
    Returns per image {"segmentation": [H, W] int32 segment ids (0 = void),
    "segments_info": [{"id", "label_id", "was_fused", "score"}]} with ids 1, 2, ...
    """
    fuse = set(label_ids_to_fuse)
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.float().softmax(-1).max(-1)  # [B, Q]
    results = []
    for b, size in enumerate(target_sizes):
        keep = (labels[b] != num_classes) & (scores[b] > score_threshold)
        mask_probs = _resize(mask_logits[b, keep].float(), size).sigmoid()  # [K, H, W]
        if mask_probs.shape[0] == 0:
            void = torch.zeros(size, dtype=torch.int32, device=mask_logits.device)
            results.append({"segmentation": void, "segments_info": []})
            continue
        kept_scores, kept_labels = scores[b, keep], labels[b, keep]
        results.append(_segments(mask_probs, kept_scores, kept_labels, overlap_threshold, mask_threshold, fuse))
    return results


def _segments(
    mask_probs: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    overlap_threshold: float,
    mask_threshold: float,
    fuse: set[int],
) -> dict:
    """Panoptic map of one image from its kept queries. mask_probs: [K, H, W]; scores, labels: [K]."""
    num_kept = mask_probs.shape[0]
    winner = (scores[:, None, None] * mask_probs).argmax(0)  # [H, W]
    binary = mask_probs >= mask_threshold  # [K, H, W]
    won_and_on = binary.gather(0, winner[None])[0]  # the pixel's winner also covers it
    win_area = torch.bincount(winner.flatten(), minlength=num_kept)
    own_area = binary.flatten(1).sum(1)
    final_area = torch.bincount(winner[won_and_on], minlength=num_kept)
    # Per-query decisions are sequential (segment ids, stuff fusion): one small host copy.
    stats = torch.stack([win_area, own_area, final_area]).tolist()
    score_list, label_list = scores.tolist(), labels.tolist()
    segment_of = [0] * num_kept
    segments: list[dict] = []
    stuff_segment: dict[int, int] = {}
    for k in range(num_kept):
        win, own, final = stats[0][k], stats[1][k], stats[2][k]
        if win == 0 or own == 0 or final == 0 or win / own < overlap_threshold:
            continue
        label = label_list[k]
        if label in fuse and label in stuff_segment:
            segment_of[k] = stuff_segment[label]
            continue
        segment_of[k] = len(segments) + 1
        if label in fuse:
            stuff_segment[label] = segment_of[k]
        segments.append(
            {"id": segment_of[k], "label_id": label, "was_fused": label in fuse, "score": round(score_list[k], 6)}
        )
    lut = torch.tensor(segment_of, dtype=torch.int32, device=mask_probs.device)
    segmentation = torch.where(won_and_on, lut[winner], torch.zeros_like(winner, dtype=torch.int32))
    return {"segmentation": segmentation, "segments_info": segments}
