"""Hungarian matching of DETR queries to target boxes (class, L1 and GIoU costs).

The cost of every decoder layer is built at once on the predictions' device, each image scored
only against its own targets (padded to the batch's largest count, not against all targets of
the batch as in DETR: B times less work). Then exactly one device -> host transfer per call:
either the costs, solved per image by scipy through ``assign_blocks``, or, on CUDA with
``torch_linear_assignment`` installed, the assignments found on the GPU by its batched solver
(which itself syncs once or twice to validate its input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from headstart.losses.assignment import assign_blocks
from headstart.ops.boxes import cxcywh_to_xyxy, generalized_box_iou

# Stands in for NaN/Inf costs so a diverged prediction is matched last instead of crashing the
# solver; the loss then turns NaN and the task's NaN policy decides. Finite in float32 sums.
INVALID_COST = 1e8

Match = tuple[torch.Tensor, torch.Tensor]


def batched_gpu_solver() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torch_linear_assignment's batched solver ([N, W, T] -> [N, W] task per worker or -1), if installed.

    Its 0.1 releases solve CUDA inputs with a Triton kernel (Ampere or newer) and otherwise fall
    back to scipy themselves, with a warning.
    """
    try:
        from torch_linear_assignment import batch_linear_assignment
    except ImportError:
        return None
    return batch_linear_assignment


def pad_targets(targets: Sequence[dict[str, torch.Tensor]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-image targets, zero-padded to the largest count T.

    targets: B dicts with "class_labels" [T_i] long and "boxes" [T_i, 4] cxcywh.
    Returns (labels [B, T] long, boxes [B, T, 4]).
    """
    labels = nn.utils.rnn.pad_sequence([t["class_labels"].to(device) for t in targets], batch_first=True)
    boxes = nn.utils.rnn.pad_sequence([t["boxes"].to(device) for t in targets], batch_first=True)
    return labels.long(), boxes.reshape(len(targets), -1, 4)


def indices_from_assignment(assignment: torch.Tensor, sizes: Sequence[int]) -> list[Match]:
    """Per-image (query_idx, target_idx) from a dense assignment.

    assignment: [N, Q] host tensor, the target column of each query or -1; columns >= sizes[i]
        are padding and dropped. Returns N pairs of int64 tensors sorted by query index.
    """
    out: list[Match] = []
    for row, n in zip(assignment, sizes):
        queries = ((row >= 0) & (row < n)).nonzero().squeeze(1)
        out.append((queries, row[queries].long()))
    return out


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising
    ``cost_bbox * L1 + cost_class * (-p[class]) + cost_giou * (-GIoU)``.

    solver: "auto" uses the batched GPU solver for CUDA inputs when available, else scipy;
    "scipy" always uses scipy (useful to compare the two).
    """

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        solver: Literal["auto", "scipy"] = "auto",
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.solver = solver

    @torch.no_grad()
    def forward(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
    ) -> list[Match]:
        """pred_logits: [B, Q, C+1]; pred_boxes: [B, Q, 4] normalised cxcywh;
        targets: B dicts with "class_labels" [T_i] long and "boxes" [T_i, 4] cxcywh.

        Returns B pairs (query_idx [K_i], target_idx [K_i]) of int64 CPU tensors, K_i = T_i,
        sorted by query index.
        """
        return self.match_layers(pred_logits[None], pred_boxes[None], targets)[0]

    @torch.no_grad()
    def match_layers(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
    ) -> list[list[Match]]:
        """Match every decoder layer with one host transfer.

        pred_logits: [L, B, Q, C+1]; pred_boxes: [L, B, Q, 4]. Returns L lists as ``forward``'s.
        """
        num_layers, batch, num_queries = pred_logits.shape[:3]
        sizes = [len(t["class_labels"]) for t in targets]
        self._check_sizes(sizes, batch, num_queries)
        if max(sizes, default=0) == 0:
            empty = torch.empty(0, dtype=torch.int64)
            return [[(empty, empty) for _ in sizes] for _ in range(num_layers)]
        labels, boxes = pad_targets(targets, pred_logits.device)
        cost = self.cost_matrix(pred_logits, pred_boxes, labels, boxes)  # [L, B, Q, T]
        solve = batched_gpu_solver() if (self.solver == "auto" and cost.is_cuda) else None
        if solve is not None:
            valid = torch.arange(cost.shape[-1], device=cost.device) < torch.tensor(sizes, device=cost.device)[:, None]
            # A constant cost on padding columns leaves the optimum on real columns unchanged (Q >= T).
            cost = cost.masked_fill(~valid[None, :, None, :], 0.0)
            assignment = solve(cost.flatten(0, 1)).cpu()  # the single device -> host transfer
            flat = indices_from_assignment(assignment, sizes * num_layers)
            return [flat[layer * batch : (layer + 1) * batch] for layer in range(num_layers)]
        host = cost.cpu()  # the single device -> host transfer
        return [
            [assign_blocks(host[layer, b : b + 1, :, :n], [n])[0] for b, n in enumerate(sizes)]
            for layer in range(num_layers)
        ]

    def cost_matrix(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor
    ) -> torch.Tensor:
        """pred_logits: [L, B, Q, C+1]; pred_boxes: [L, B, Q, 4]; labels: [B, T]; boxes: [B, T, 4].

        Returns float32 costs [L, B, Q, T] (padding columns hold meaningless values).
        """
        num_layers, batch, num_queries = pred_logits.shape[:3]
        prob = pred_logits.float().softmax(-1)
        pred_boxes = pred_boxes.float()
        boxes = boxes.to(pred_boxes.dtype)
        # 1 - p[class] approximates the NLL; the constant 1 does not change the matching.
        class_idx = labels[None, :, None, :].expand(num_layers, batch, num_queries, -1)
        class_cost = -prob.gather(-1, class_idx)
        bbox_cost = torch.cdist(pred_boxes, boxes[None].expand(num_layers, -1, -1, -1), p=1)
        giou_cost = -generalized_box_iou(cxcywh_to_xyxy(pred_boxes), cxcywh_to_xyxy(boxes)[None])
        cost = self.cost_bbox * bbox_cost + self.cost_class * class_cost + self.cost_giou * giou_cost
        return torch.nan_to_num(cost, nan=INVALID_COST, posinf=INVALID_COST, neginf=INVALID_COST)

    @staticmethod
    def _check_sizes(sizes: list[int], batch: int, num_queries: int) -> None:
        if len(sizes) != batch:
            raise ValueError(f"HungarianMatcher: {len(sizes)} target dicts for a batch of {batch} images")
        for b, n in enumerate(sizes):
            if n > num_queries:
                raise ValueError(
                    f"HungarianMatcher: image {b} has {n} target boxes but the model has only {num_queries} "
                    f"queries; raise the number of queries (DETR: num_queries) or drop boxes"
                )
