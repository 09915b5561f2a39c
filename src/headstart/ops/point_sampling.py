"""Point sampling on mask logits (PointRend / Mask2Former): losses on P points instead of every pixel.

Coordinates are normalised to [0, 1] x [0, 1] as (x, y), so predictions and targets of
different resolutions are sampled at the same places without resizing either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, coords: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinearly sample feature maps at normalised points.

    features: [N, C, H, W].
    coords: [N, P, 2] (x, y) in [0, 1], or [N, Hg, Wg, 2].
    Returns [N, C, P] (or [N, C, Hg, Wg]).
    """
    squeeze = coords.dim() == 3
    grid = coords.unsqueeze(2) if squeeze else coords
    out = F.grid_sample(features, 2.0 * grid - 1.0, align_corners=align_corners)
    return out.squeeze(3) if squeeze else out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of binary mask logits: highest where the logit is closest to 0. [N, 1, ...] -> same."""
    return -logits.abs()


def draw_point_candidates(
    num_masks: int,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the random coordinates that uncertainty sampling chooses from.

    Split from the selection so a caller can draw before it knows which masks it samples
    (the draws happen in the same order as in Mask2Former's criterion: candidates, then the
    uniform part).
    Returns candidates [N, int(P * oversample_ratio), 2] and uniform points
    [N, P - int(P * importance_sample_ratio), 2], both (x, y) in [0, 1].
    """
    num_sampled = int(num_points * oversample_ratio)
    num_random = num_points - int(importance_sample_ratio * num_points)
    candidates = torch.rand(num_masks, num_sampled, 2, device=device)
    uniform = (
        torch.rand(num_masks, num_random, 2, device=device)
        if num_random > 0
        else torch.empty(num_masks, 0, 2, device=device)
    )
    return candidates, uniform


def select_uncertain_points(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    uniform: torch.Tensor,
    num_uncertain: int,
    uncertainty_fn: Callable[[torch.Tensor], torch.Tensor] = calculate_uncertainty,
) -> torch.Tensor:
    """Keep the num_uncertain most uncertain candidates of each mask, then append the uniform points.

    logits: [N, 1, h, w] mask logits. candidates: [N, S, 2]. uniform: [N, R, 2].
    Returns [N, num_uncertain + R, 2].
    """
    uncertainty = uncertainty_fn(point_sample(logits, candidates))  # [N, 1, S]
    idx = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]  # [N, K]
    chosen = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    return torch.cat([chosen, uniform], dim=1)


def get_uncertain_point_coords_with_randomness(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    uncertainty_fn: Callable[[torch.Tensor], torch.Tensor] = calculate_uncertainty,
) -> torch.Tensor:
    """Sample num_points per mask, biased towards uncertain regions (PointRend).

    logits: [N, 1, h, w]. Returns coords [N, num_points, 2] in [0, 1]: the
    int(importance_sample_ratio * P) most uncertain of P * oversample_ratio uniform draws,
    then uniform points for the rest.
    """
    candidates, uniform = draw_point_candidates(
        logits.shape[0], num_points, oversample_ratio, importance_sample_ratio, logits.device
    )
    return select_uncertain_points(
        logits, candidates, uniform, int(importance_sample_ratio * num_points), uncertainty_fn
    )
