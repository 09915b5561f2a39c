"""Box format conversions, areas, IoU and generalized IoU (pure functions, any leading batch dims).

Formats: ``cxcywh`` is (center_x, center_y, width, height); ``xyxy`` is (x0, y0, x1, y1) with
x1 >= x0 and y1 >= y0. Pairwise functions broadcast leading dims, so one call scores a whole
batch ``[..., N, 4] x [..., M, 4] -> [..., N, M]``. No validity check is made here: a check would
need a host sync in the training loop, and boxes predicted as sigmoid cxcywh are always valid.
"""

from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """boxes: [..., 4] cxcywh -> [..., 4] xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """boxes: [..., 4] xyxy -> [..., 4] cxcywh."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # half-precision products of coordinates overflow or lose too much for areas
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """boxes: [..., 4] xyxy -> areas [...]."""
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU.

    boxes1: [..., N, 4] xyxy; boxes2: [..., M, 4] xyxy (leading dims broadcast).
    Returns (iou [..., N, M], union [..., N, M]).
    """
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    left_top = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # [..., N, M, 2]
    right_bottom = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (right_bottom - left_top).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU (https://giou.stanford.edu/), in [-1, 1].

    boxes1: [..., N, 4] xyxy; boxes2: [..., M, 4] xyxy (leading dims broadcast) -> [..., N, M].
    """
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def generalized_box_iou_paired(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU of matched pairs: the diagonal of ``generalized_box_iou`` without the N x N work.

    boxes1, boxes2: [..., N, 4] xyxy -> [..., N].
    """
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    wh_inter = (torch.min(boxes1[..., 2:], boxes2[..., 2:]) - torch.max(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    inter = wh_inter[..., 0] * wh_inter[..., 1]
    union = area1 + area2 - inter
    wh_hull = (torch.max(boxes1[..., 2:], boxes2[..., 2:]) - torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    enclosing = wh_hull[..., 0] * wh_hull[..., 1]
    return inter / union - (enclosing - union) / enclosing
