"""DETR-style detection post-processing: scores, labels and pixel xyxy boxes per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from headstart.ops.boxes import cxcywh_to_xyxy


def post_process_detections(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    image_sizes: torch.Tensor | Sequence[tuple[int, int]] | None = None,
    threshold: float = 0.5,
    top_k: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Turn set predictions into per-image detections.

    Like transformers' ``DetrImageProcessor.post_process_object_detection``: softmax over all
    C+1 classes, then each query's best real class (the no-object column is left out of the max,
    so its mass lowers the score but never wins).

    logits: [B, Q, C+1] class logits, the last column being no-object.
    boxes: [B, Q, 4] normalised cxcywh in [0, 1].
    image_sizes: [B, 2] (height, width) of the original images; None keeps normalised coordinates.
    threshold: keep detections whose score is strictly above it.
    top_k: if given, keep at most the k best-scoring queries per image, sorted by score
        (descending); otherwise kept detections stay in query order, as in transformers.
    Returns per image {"scores": [K], "labels": [K] long, "boxes": [K, 4] xyxy (pixels)}.
    """
    if logits.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"logits {tuple(logits.shape)} and boxes {tuple(boxes.shape)} disagree on [B, Q]")
    scores, labels = logits.softmax(-1)[..., :-1].max(-1)  # [B, Q]
    xyxy = cxcywh_to_xyxy(boxes)
    if image_sizes is not None:
        sizes = torch.as_tensor(image_sizes, dtype=xyxy.dtype, device=xyxy.device).reshape(-1, 2)
        if sizes.shape[0] != logits.shape[0]:
            raise ValueError(f"got {sizes.shape[0]} image sizes for a batch of {logits.shape[0]}")
        height, width = sizes.unbind(1)
        xyxy = xyxy * torch.stack([width, height, width, height], dim=1)[:, None, :]
    if top_k is not None:
        scores, order = scores.topk(min(top_k, scores.shape[1]), dim=1)
        labels = labels.gather(1, order)
        xyxy = xyxy.gather(1, order[..., None].expand(-1, -1, 4))
    results = []
    for s, lab, box in zip(scores, labels, xyxy):
        keep = s > threshold
        results.append({"scores": s[keep], "labels": lab[keep], "boxes": box[keep]})
    return results
