"""DETR set criterion: CE (down-weighted no-object) + L1 + GIoU on Hungarian-matched pairs, per decoder layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from headstart.losses.matcher import HungarianMatcher, Match
from headstart.ops.boxes import cxcywh_to_xyxy, generalized_box_iou_paired


def average_num_boxes(sizes: Sequence[int], device: torch.device) -> torch.Tensor:
    """Target boxes per rank, averaged over DDP ranks when torch.distributed is up; at least 1.

    Kept as a tensor: no host sync. Returns a 0-d float tensor.
    """
    num_boxes = torch.tensor(float(sum(sizes)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_boxes)
        num_boxes = num_boxes / dist.get_world_size()
    return num_boxes.clamp(min=1)


def _flat_match_index(matches: list[list[Match]], sizes: Sequence[int], device: torch.device) -> torch.Tensor:
    """All matched pairs of all layers as one [4, M] index (layer, image, query, target in the
    concatenated targets), built on the host and sent in one copy."""
    offsets = [0]
    for n in sizes[:-1]:
        offsets.append(offsets[-1] + n)
    rows = []
    for layer, layer_matches in enumerate(matches):
        for b, (queries, targets) in enumerate(layer_matches):
            layer_idx, image_idx = torch.full_like(queries, layer), torch.full_like(queries, b)
            rows.append(torch.stack([layer_idx, image_idx, queries, targets + offsets[b]]))
    index = torch.cat(rows, dim=1) if rows else torch.empty(4, 0, dtype=torch.int64)
    return index.to(device, non_blocking=True)


class SetCriterion(nn.Module):
    """Hungarian set loss of DETR, with the same terms for every auxiliary decoder layer.

    Terms: ``loss_ce``, ``loss_bbox``, ``loss_giou`` (last layer), ``loss_ce_i``... for auxiliary
    layer i (0 = first decoder layer), ``cardinality_error[_i]`` (logged only, no gradient),
    and the weighted total ``loss``. Box terms are normalised by the number of target boxes,
    averaged across DDP ranks.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        eos_coef: float = 0.1,
        weight_ce: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        aux_loss: bool = True,
    ) -> None:
        """num_classes: C real classes (logits have C+1 columns, the last being no-object);
        eos_coef: CE weight of the no-object class."""
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_ce, self.weight_bbox, self.weight_giou = weight_ce, weight_bbox, weight_giou
        self.aux_loss = aux_loss
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = eos_coef
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        targets: Sequence[dict[str, torch.Tensor]],
        aux_outputs: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """pred_logits: [B, Q, C+1] and pred_boxes: [B, Q, 4] normalised cxcywh of the last layer;
        targets: B dicts with "class_labels" [T_i] long and "boxes" [T_i, 4] cxcywh;
        aux_outputs: (logits, boxes) of the earlier decoder layers, first layer first (ignored
        when aux_loss is False). Returns named 0-d terms plus "loss".
        """
        if pred_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"pred_logits has {pred_logits.shape[-1]} classes, expected num_classes + 1 = {self.num_classes + 1}"
            )
        aux = list(aux_outputs) if (self.aux_loss and aux_outputs) else []
        logits = torch.stack([a for a, _ in aux] + [pred_logits]).float()  # [L, B, Q, C+1]
        boxes = torch.stack([b for _, b in aux] + [pred_boxes]).float()  # [L, B, Q, 4]
        sizes = [len(t["class_labels"]) for t in targets]
        matches = self.matcher.match_layers(logits, boxes, targets)
        index = _flat_match_index(matches, sizes, logits.device)
        num_boxes = average_num_boxes(sizes, logits.device)
        target_labels = torch.cat([t["class_labels"] for t in targets]).to(logits.device).long()
        target_boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(boxes)

        per_layer = {
            "loss_ce": self._class_loss(logits, index, target_labels),
            **self._box_losses(boxes, index, target_boxes, num_boxes),
            "cardinality_error": self._cardinality_error(logits, sizes),
        }
        total = (
            self.weight_ce * per_layer["loss_ce"]
            + self.weight_bbox * per_layer["loss_bbox"]
            + self.weight_giou * per_layer["loss_giou"]
        ).sum()
        num_layers = logits.shape[0]
        out = {}
        for name, values in per_layer.items():
            for layer in range(num_layers):
                out[name if layer == num_layers - 1 else f"{name}_{layer}"] = values[layer]
        out["loss"] = total
        return out

    def _class_loss(self, logits: torch.Tensor, index: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
        """logits: [L, B, Q, C+1] -> weighted-mean CE per layer [L]; unmatched queries target no-object."""
        target_classes = torch.full(logits.shape[:3], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[index[0], index[1], index[2]] = target_labels[index[3]]
        nll = F.cross_entropy(logits.flatten(0, 2), target_classes.flatten(), reduction="none")
        nll = nll.view(logits.shape[0], -1)
        weight = self.class_weight.to(logits.dtype)[target_classes].view(logits.shape[0], -1)
        # the weighted mean of F.cross_entropy(weight=...), taken per layer
        return (weight * nll).sum(1) / weight.sum(1)

    @staticmethod
    def _box_losses(
        boxes: torch.Tensor, index: torch.Tensor, target_boxes: torch.Tensor, num_boxes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """boxes: [L, B, Q, 4]; target_boxes: [T_total, 4] -> {"loss_bbox": [L], "loss_giou": [L]}."""
        src = boxes[index[0], index[1], index[2]]  # [M, 4]
        tgt = target_boxes[index[3]]
        l1 = (src - tgt).abs().sum(-1)
        giou = 1 - generalized_box_iou_paired(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt))
        zeros = boxes.new_zeros(boxes.shape[0])
        return {
            "loss_bbox": zeros.index_add(0, index[0], l1) / num_boxes,
            "loss_giou": zeros.index_add(0, index[0], giou) / num_boxes,
        }

    @torch.no_grad()
    def _cardinality_error(self, logits: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Mean |#queries not predicting no-object - #targets| per layer [L]; for logging only."""
        predicted = (logits.argmax(-1) != self.num_classes).sum(-1).float()  # [L, B]
        expected = torch.tensor(sizes, dtype=torch.float32, device=logits.device)
        return (predicted - expected).abs().mean(-1)
