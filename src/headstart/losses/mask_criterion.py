"""Mask2Former's set criterion: Hungarian matching, then CE on classes and point-sampled BCE + dice on masks.

Every decoder layer is supervised (auxiliary losses). Random draws happen in the order of
transformers' Mask2FormerLoss (last layer's matcher points, its loss points, then layers
0, 1, ...), so under the same seed both give the same numbers; drawing every layer's points
up front lets all layers' assignments be solved with one host transfer per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from headstart.losses.assignment import assign_blocks
from headstart.losses.mask_matcher import MaskHungarianMatcher
from headstart.ops.masks import dice_loss, sigmoid_ce_loss
from headstart.ops.point_sampling import draw_point_candidates, point_sample, select_uncertain_points

Indices = list[tuple[torch.Tensor, torch.Tensor]]


class MaskCriterion(nn.Module):
    """Loss of a mask-classification model (Mask2Former).

    Terms: loss_cross_entropy, loss_mask, loss_dice for the last layer and the same names
    with suffix _0, _1, ... for the earlier decoder layers; "loss" is the weighted sum of all.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: MaskHungarianMatcher,
        eos_coef: float = 0.1,
        weight_ce: float = 2.0,
        weight_mask: float = 5.0,
        weight_dice: float = 5.0,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_cross_entropy": weight_ce, "loss_mask": weight_mask, "loss_dice": weight_dice}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef  # down-weights the many unmatched ("no object") queries
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def forward(
        self,
        class_logits: torch.Tensor | Sequence[torch.Tensor],
        mask_logits: torch.Tensor | Sequence[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """class_logits: [L, B, Q, C+1] or L tensors [B, Q, C+1] (last = final layer; [B, Q, C+1] = one layer).
        mask_logits: [L, B, Q, h, w] or L tensors [B, Q, h, w].
        targets: B dicts with "class_labels" [T_b] int64 and "masks" [T_b, H, W] float/bool.
        """
        class_layers = _as_layers(class_logits, 3)
        mask_layers = _as_layers(mask_logits, 4)
        if len(class_layers) != len(mask_layers):
            raise ValueError(f"{len(class_layers)} layers of class logits but {len(mask_layers)} of mask logits")
        labels = [t["class_labels"].long() for t in targets]
        masks = [t["masks"] for t in targets]
        sizes = [len(x) for x in labels]
        num_layers = len(class_layers)
        device = mask_layers[0].device
        order = [num_layers - 1, *range(num_layers - 1)]  # the reference's order: final layer first
        ordered = ([class_layers[i] for i in order], [mask_layers[i] for i in order])
        indices, points = self._match_layers(*ordered, labels, masks)

        num_masks = self._num_masks(sizes, device)
        all_labels = torch.cat(labels).to(device)
        all_masks = _stack_masks(masks)  # [T, H_max, W_max]
        losses: dict[str, torch.Tensor] = {}
        total = class_layers[0].new_zeros((), dtype=torch.float32)
        for i, layer in enumerate(order):
            matched = _flat_indices(indices[i], sizes, device)
            terms = {
                "loss_cross_entropy": self._class_loss(class_layers[layer], all_labels, matched),
                **self._mask_losses(mask_layers[layer], all_masks, matched, points[i], num_masks),
            }
            suffix = "" if layer == num_layers - 1 else f"_{layer}"
            for name, value in terms.items():
                total = total + self.weights[name] * value
                losses[name + suffix] = value.detach()
        losses["loss"] = total
        return losses

    def _match_layers(
        self,
        class_layers: list[torch.Tensor],
        mask_layers: list[torch.Tensor],
        labels: list[torch.Tensor],
        masks: list[torch.Tensor],
    ) -> tuple[list[Indices], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Assign every layer (in the given order) and draw its loss points; one host transfer in all.

        Per layer: the matcher's points, then the loss's candidate and uniform points, as the
        reference draws them (their count depends only on how many pairs get matched).
        Returns per layer the per-image (query_idx, target_idx) and (candidates, uniform) points.
        """
        batch_size, num_queries = class_layers[0].shape[:2]
        device = mask_layers[0].device
        sizes = [len(x) for x in labels]
        num_matched = sum(min(num_queries, n) for n in sizes)
        costs, points = [], []
        for class_logits, mask_logits in zip(class_layers, mask_layers):
            coords = self.matcher.sample_coords(batch_size, device)
            costs.append(self.matcher.cost_matrix(class_logits, mask_logits, labels, masks, coords))
            ratios = (self.oversample_ratio, self.importance_sample_ratio)
            points.append(draw_point_candidates(num_matched, self.num_points, *ratios, device))
        # assign_blocks finds its input on the host already: one device -> host copy for all layers.
        indices = [assign_blocks(cost, sizes) for cost in torch.stack(costs).cpu()]
        return indices, points

    def _class_loss(
        self, class_logits: torch.Tensor, all_labels: torch.Tensor, matched: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """CE over all queries; unmatched queries target the no-object class C. class_logits: [B, Q, C+1]."""
        batch_idx, query_idx, target_idx = matched
        target = torch.full(class_logits.shape[:2], self.num_classes, dtype=torch.int64, device=class_logits.device)
        target[batch_idx, query_idx] = all_labels[target_idx]
        return F.cross_entropy(class_logits.float().transpose(1, 2), target, weight=self.empty_weight)

    def _mask_losses(
        self,
        mask_logits: torch.Tensor,
        all_masks: torch.Tensor,
        matched: tuple[torch.Tensor, ...],
        points: tuple[torch.Tensor, torch.Tensor],
        num_masks: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """BCE and dice of matched masks on uncertainty-sampled points. mask_logits: [B, Q, h, w]."""
        batch_idx, query_idx, target_idx = matched
        if len(batch_idx) == 0:
            zero = mask_logits.sum() * 0.0  # keeps the graph connected (DDP expects every parameter used)
            return {"loss_mask": zero, "loss_dice": zero}
        pred = mask_logits[batch_idx, query_idx].float()[:, None]  # [N, 1, h, w]
        target = all_masks[target_idx.to(all_masks.device)].to(device=pred.device, dtype=pred.dtype)[:, None]
        with torch.no_grad():
            num_uncertain = int(self.importance_sample_ratio * self.num_points)
            coords = select_uncertain_points(pred, points[0], points[1], num_uncertain)  # [N, P, 2]
            point_labels = point_sample(target, coords).squeeze(1)  # [N, P]
        point_logits = point_sample(pred, coords).squeeze(1)  # [N, P]
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    @staticmethod
    def _num_masks(sizes: list[int], device: torch.device) -> torch.Tensor:
        """Average number of target masks per rank (at least 1), so every rank normalises alike."""
        num = torch.as_tensor(float(sum(sizes)), device=device)
        world_size = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num)
            world_size = dist.get_world_size()
        return torch.clamp(num / world_size, min=1)


def _as_layers(x: torch.Tensor | Sequence[torch.Tensor], single_dim: int) -> list[torch.Tensor]:
    """A stacked [L, ...] tensor, a sequence of per-layer tensors, or one layer -> list of layers."""
    if isinstance(x, torch.Tensor) and x.dim() == single_dim:
        return [x]
    return list(x)


def _stack_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-image target masks [T_b, H_b, W_b] into [T, H_max, W_max], zero-padded bottom/right."""
    height = max(m.shape[-2] for m in masks)
    width = max(m.shape[-1] for m in masks)
    if all(m.shape[-2:] == (height, width) for m in masks):
        return torch.cat(masks)
    out = masks[0].new_zeros(sum(len(m) for m in masks), height, width)
    start = 0
    for m in masks:
        out[start : start + len(m), : m.shape[-2], : m.shape[-1]] = m
        start += len(m)
    return out


def _flat_indices(indices: Indices, sizes: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-image (query_idx, target_idx) -> (batch_idx [N], query_idx [N], batch-level target_idx [N]) on device."""
    offsets = [0]
    for n in sizes[:-1]:
        offsets.append(offsets[-1] + n)
    batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
    query_idx = torch.cat([q for q, _ in indices])
    target_idx = torch.cat([t + offsets[b] for b, (_, t) in enumerate(indices)])
    return batch_idx.to(device), query_idx.to(device), target_idx.to(device)
