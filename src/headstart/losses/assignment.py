"""Per-image Hungarian assignment from one batched cost matrix (one host transfer per step)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def assign_blocks(cost: torch.Tensor, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Solve one assignment problem per image.

    cost: [B, Q, T] costs of every query against every target of the whole batch
        (T = sum(sizes)); only the block of image b's own targets is used for image b.
    sizes: number of targets per image, len B.
    Returns per image (query_idx [K], target_idx [K]) int64 CPU tensors, K = min(Q, sizes[b]),
    target indices local to the image, sorted by query index.
    """
    if cost.shape[0] != len(sizes) or cost.shape[2] != sum(sizes):
        raise ValueError(f"cost {tuple(cost.shape)} does not match target sizes {sizes}")
    cost_np = cost.detach().float().cpu().numpy()  # the single device -> host transfer
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    start = 0
    for b, n in enumerate(sizes):
        block = cost_np[b, :, start : start + n]
        start += n
        if n == 0:
            empty = torch.empty(0, dtype=torch.int64)
            out.append((empty, empty.clone()))
            continue
        if not np.isfinite(block).all():
            raise ValueError(f"matching cost of image {b} has NaN/Inf entries")
        rows, cols = linear_sum_assignment(block)
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out
