"""Hungarian matching of predicted masks to target masks (Mask2Former's matcher, batched).

Cost of query q against target t of the same image:
    cost_class * -p_q(class_t) + cost_mask * BCE(q, t) + cost_dice * dice(q, t),
with BCE and dice taken on num_points random points shared by all masks of that image.
The costs of the whole batch are built on device and solved with one host transfer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from headstart.losses.assignment import assign_blocks
from headstart.ops.masks import pairwise_dice_cost, pairwise_sigmoid_ce_cost
from headstart.ops.point_sampling import point_sample


class MaskHungarianMatcher(nn.Module):
    """One-to-one assignment of queries to target masks, per image.

    Defaults are Mask2Former's loss weights (class 2, mask 5, dice 5), which it also uses as
    matching costs.
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("MaskHungarianMatcher: cost_class, cost_mask and cost_dice cannot all be 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def sample_coords(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Random points shared by all masks of each image: [B, P, 2], (x, y) in [0, 1].

        One draw per image, in image order, so the random stream matches the per-image
        reference matcher on every device.
        """
        draws = [torch.rand(1, self.num_points, 2, device=device) for _ in range(batch_size)]
        return torch.cat(draws, dim=0)

    @torch.no_grad()
    def cost_matrix(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        class_labels: list[torch.Tensor],
        mask_labels: list[torch.Tensor],
        coords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Matching costs of the whole batch.

        class_logits: [B, Q, C+1]. mask_logits: [B, Q, h, w].
        class_labels: B tensors [T_b] of class ids. mask_labels: B tensors [T_b, H_b, W_b].
        coords: [B, P, 2] points to compare masks on (drawn with sample_coords when None).
        Returns [B, Q, T] with T = sum(T_b); column t of row b is only meaningful when
        target t belongs to image b (the layout assign_blocks expects).
        """
        batch_size, num_queries = class_logits.shape[:2]
        device = mask_logits.device
        if coords is None:
            coords = self.sample_coords(batch_size, device)
        sizes = [len(labels) for labels in class_labels]
        if sum(sizes) == 0:
            return class_logits.new_zeros(batch_size, num_queries, 0, dtype=torch.float32)

        # Matching runs in float32 even under autocast: costs only order candidates.
        probs = class_logits.float().softmax(-1)  # [B, Q, C+1]
        pred_points = point_sample(mask_logits.float(), coords)  # [B, Q, P]
        # Targets are sampled per image at their own size, since images may differ in size.
        target_points = pad_sequence(
            [point_sample(m.float()[None], coords[b : b + 1])[0] for b, m in enumerate(mask_labels)],
            batch_first=True,
        )  # [B, T_max, P]
        labels = pad_sequence([c.long() for c in class_labels], batch_first=True)  # [B, T_max]

        cost_class = -probs.gather(2, labels[:, None, :].expand(-1, num_queries, -1))
        cost = (
            self.cost_mask * pairwise_sigmoid_ce_cost(pred_points, target_points)
            + self.cost_class * cost_class
            + self.cost_dice * pairwise_dice_cost(pred_points, target_points)
        )  # [B, Q, T_max]
        # As the reference: NaN/Inf become the largest float, matched only when nothing else is left.
        big = torch.finfo(cost.dtype).max
        cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)
        # Spread [B, Q, T_max] (local target index) to [B, Q, T] (batch target index).
        local = torch.cat([torch.arange(n, device=device) for n in sizes])  # [T]
        return cost.gather(2, local[None, None, :].expand(batch_size, num_queries, -1))

    @torch.no_grad()
    def forward(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        class_labels: list[torch.Tensor],
        mask_labels: list[torch.Tensor],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image (query_idx [K], target_idx [K]) int64 CPU tensors, K = min(Q, T_b).

        Shapes as in cost_matrix.
        """
        cost = self.cost_matrix(class_logits, mask_logits, class_labels, mask_labels)
        return assign_blocks(cost, [len(labels) for labels in class_labels])
