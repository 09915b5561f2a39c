"""Scale-invariant log loss (SILog, Eigen et al. 2014), the loss GLPN trains with.

    d_i = log y_i - log y*_i over valid pixels i (pooled over the batch, as in GLPN)
    silog = sqrt(mean(d^2) - lambd * mean(d)^2)

lambd = 0 is a plain log-RMSE; lambd = 1 is fully scale invariant; GLPN uses 0.5.
A pixel is valid when its target is finite and strictly inside (min_depth, max_depth),
so datasets may mark missing depth with 0, NaN or inf.
"""

from __future__ import annotations

import torch
from torch import nn

# Keeps log() finite where a sigmoid head underflows to exactly 0.
_PRED_FLOOR = 1e-6
# sqrt'(0) is inf; a floor keeps gradients finite when prediction == target exactly.
_VAR_FLOOR = 1e-12


def valid_depth_mask(target: torch.Tensor, min_depth: float = 1e-3, max_depth: float = float("inf")) -> torch.Tensor:
    """[...] bool: target finite and min_depth < target < max_depth."""
    return torch.isfinite(target) & (target > min_depth) & (target < max_depth)


def silog_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    lambd: float = 0.5,
) -> torch.Tensor:
    """SILog over valid pixels of the whole batch.

    pred: [B, H, W] predicted depth (metres, > 0); target: [B, H, W] ground truth;
    valid: [B, H, W] bool (default: target finite and > 0). Returns a scalar, 0 when
    nothing is valid.
    """
    if pred.shape != target.shape:
        raise ValueError(f"silog_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if valid is None:
        valid = valid_depth_mask(target, min_depth=0.0)
    # Masked sums instead of boolean indexing: no host sync, and invalid targets (maybe NaN)
    # are replaced before log so they never reach the graph.
    valid = valid & torch.isfinite(target) & (target > 0)
    count = valid.sum().clamp_min(1)
    safe_target = torch.where(valid, target, torch.ones_like(target))
    diff = torch.log(safe_target) - torch.log(pred.clamp_min(_PRED_FLOOR))
    diff = torch.where(valid, diff, torch.zeros_like(diff))
    mean_diff = diff.sum() / count
    variance = diff.pow(2).sum() / count - lambd * mean_diff.pow(2)
    # Nothing valid: 0, still attached to pred's graph so DDP sees every parameter used.
    return torch.sqrt(variance.clamp_min(_VAR_FLOOR)) * valid.any()


class SILogLoss(nn.Module):
    """SILog over pixels with min_depth < target < max_depth (finite).

    forward(pred [B, H, W] or [B, 1, H, W], target same) -> {"loss": weight * silog, "silog": silog}.
    """

    def __init__(
        self, lambd: float = 0.5, min_depth: float = 1e-3, max_depth: float = 10.0, weight: float = 1.0
    ) -> None:
        super().__init__()
        self.lambd = lambd
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.weight = weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        pred, target = _squeeze_channel(pred), _squeeze_channel(target)
        valid = valid_depth_mask(target, self.min_depth, self.max_depth)
        # log of bf16 loses ~3 digits; the loss is cheap, so compute it in float32.
        silog = silog_loss(pred.float(), target.float(), valid, self.lambd)
        return {"loss": self.weight * silog, "silog": silog.detach()}


def _squeeze_channel(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] -> [B, H, W]; anything else unchanged."""
    return x.squeeze(1) if x.dim() == 4 and x.shape[1] == 1 else x
