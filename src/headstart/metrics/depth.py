"""Standard monocular depth metrics (Eigen et al. 2014) as a torchmetrics Metric.

Over valid pixels (target finite, min_depth < target < max_depth, inside the optional crop),
with the prediction clamped to [min_depth, max_depth] as in the BTS / GLPN / Monodepth2
evaluation scripts:

    abs_rel  = mean |g - p| / g          sq_rel   = mean (g - p)^2 / g
    rmse     = sqrt(mean (g - p)^2)      rmse_log = sqrt(mean (log g - log p)^2)
    log10    = mean |log10 g - log10 p|  delta_k  = mean [max(g/p, p/g) < 1.25^k], k = 1, 2, 3

``reduction="image"`` (the published protocol) computes each metric per image and averages
over images; ``"pixel"`` pools all pixels of the split. Both keep only sums as states
(``dist_reduce_fx="sum"``), so the result is exact over a whole split and under DDP.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric

METRIC_NAMES: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
_SQRT_METRICS = ("rmse", "rmse_log")

Crop = Literal["garg", "eigen", "eigen_nyu"]

# (top, bottom, left, right) as fractions of the image (KITTI crops from Garg et al. 2016 and
# Eigen et al. 2014 as written in BTS/Monodepth2) or, for NYU, pixels of a 480x640 frame.
_KITTI_CROPS: dict[str, tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
_NYU_EIGEN_CROP = (45, 471, 41, 601)


def crop_mask(height: int, width: int, crop: Crop | None, device: torch.device | None = None) -> torch.Tensor:
    """[H, W] bool: True inside the evaluation crop (everywhere when crop is None)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        return mask.fill_(True)
    if crop in _KITTI_CROPS:
        top, bottom, left, right = _KITTI_CROPS[crop]
        rows = slice(int(top * height), int(bottom * height))
        cols = slice(int(left * width), int(right * width))
    elif crop == "eigen_nyu":
        # Integer arithmetic so that 480x640 gives exactly [45:471, 41:601].
        top, bottom, left, right = _NYU_EIGEN_CROP
        rows = slice(top * height // 480, bottom * height // 480)
        cols = slice(left * width // 640, right * width // 640)
    else:
        raise ValueError(f"unknown depth crop '{crop}'; choose one of garg, eigen, eigen_nyu or None")
    mask[rows, cols] = True
    return mask


def masked_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median of each row over its valid entries (mean of the two middle ones when even, as numpy).

    values, valid: [B, N] -> [B]; rows with no valid entry give NaN.
    """
    count = valid.sum(dim=1)
    ordered = torch.where(valid, values, torch.full_like(values, float("inf"))).sort(dim=1).values
    low = ((count - 1).clamp_min(0) // 2).unsqueeze(1)
    high = (count // 2).clamp_max(values.shape[1] - 1).unsqueeze(1)
    median = 0.5 * (ordered.gather(1, low) + ordered.gather(1, high)).squeeze(1)
    return torch.where(count > 0, median, torch.full_like(median, float("nan")))


def depth_error_sums(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image sums of the per-pixel terms of :data:`METRIC_NAMES` over valid pixels.

    pred, target: [B, H, W] (pred > 0); valid: [B, H, W] bool.
    Returns (sums [B, 8] in METRIC_NAMES order, with squared errors for rmse / rmse_log,
    counts [B]). Computed in float64 so that sums over a whole split stay exact.
    """
    pred, target = pred.double(), torch.where(valid, target, torch.ones_like(target)).double()
    log_ratio = torch.log(target) - torch.log(pred)
    ratio = torch.maximum(target / pred, pred / target)
    err = target - pred
    terms = torch.stack(
        [
            err.abs() / target,
            err.pow(2) / target,
            err.pow(2),
            log_ratio.pow(2),
            log_ratio.abs() / torch.log(torch.tensor(10.0, dtype=torch.float64)),
            (ratio < 1.25).double(),
            (ratio < 1.25**2).double(),
            (ratio < 1.25**3).double(),
        ],
        dim=-1,
    )
    terms = torch.where(valid.unsqueeze(-1), terms, torch.zeros_like(terms))
    return terms.sum(dim=(1, 2)), valid.sum(dim=(1, 2)).double()


class DepthMetrics(Metric):
    """abs_rel, sq_rel, rmse, rmse_log, log10, delta1..3 over valid pixels of a whole split.

    Args:
        min_depth, max_depth: valid ground-truth range (open interval); predictions are
            clamped to [min_depth, max_depth].
        crop: evaluation crop (``garg`` / ``eigen`` for KITTI, ``eigen_nyu`` for NYUv2) or None.
        median_scaling: scale each prediction by median(gt) / median(pred) over its valid
            pixels first (for scale-ambiguous models).
        reduction: ``image`` averages per-image metrics (images without a valid pixel are
            skipped); ``pixel`` pools all valid pixels.

    update(preds [B, H, W] or [B, 1, H, W], target same shape); compute() -> dict name -> scalar.
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        crop: Crop | None = None,
        median_scaling: bool = False,
        reduction: Literal["image", "pixel"] = "image",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if reduction not in ("image", "pixel"):
            raise ValueError(f"DepthMetrics: reduction must be 'image' or 'pixel', got '{reduction}'")
        crop_mask(1, 1, crop)  # fail now, not at the first update, on an unknown crop name
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.crop, self.median_scaling, self.reduction = crop, median_scaling, reduction
        for name in METRIC_NAMES:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = _as_bhw(preds).detach().float(), _as_bhw(target).detach().float()
        if preds.shape != target.shape:
            raise ValueError(f"DepthMetrics: preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        height, width = target.shape[-2:]
        valid = torch.isfinite(target) & (target > self.min_depth) & (target < self.max_depth)
        valid &= crop_mask(height, width, self.crop, device=target.device)
        if self.median_scaling:
            batch = preds.shape[0]
            flat_valid = valid.reshape(batch, -1)
            ratio = masked_median(target.reshape(batch, -1), flat_valid) / masked_median(
                preds.reshape(batch, -1), flat_valid
            )
            preds = preds * torch.nan_to_num(ratio, nan=1.0).view(batch, 1, 1)
        preds = torch.nan_to_num(preds, nan=self.min_depth).clamp(self.min_depth, self.max_depth)
        sums, counts = depth_error_sums(preds, target, valid)
        if self.reduction == "pixel":
            totals, count = sums.sum(dim=0), counts.sum()
        else:
            per_image = sums / counts.clamp_min(1).unsqueeze(1)
            for index, name in enumerate(METRIC_NAMES):
                if name in _SQRT_METRICS:
                    per_image[:, index] = per_image[:, index].sqrt()
            totals, count = (per_image * (counts > 0).unsqueeze(1)).sum(dim=0), (counts > 0).sum().double()
        for index, name in enumerate(METRIC_NAMES):
            setattr(self, name, getattr(self, name) + totals[index])
        self.count += count

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp_min(1)
        out = {}
        for name in METRIC_NAMES:
            value = getattr(self, name) / count
            if self.reduction == "pixel" and name in _SQRT_METRICS:
                value = value.sqrt()
            # NaN, not a flattering 0, when nothing valid was ever seen.
            out[name] = torch.where(self.count > 0, value, torch.full_like(value, float("nan"))).float()
        return out


def _as_bhw(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] -> [B, H, W]; [H, W] -> [1, H, W]; [B, H, W] unchanged."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    return x.unsqueeze(0) if x.dim() == 2 else x
