"""Depth maps and depth errors as RGB images (numpy uint8), for W&B media and files.

The colour map is Google's Turbo from its published polynomial fit (Mikhailov 2019),
tabulated once into a 256-entry LUT (no plotting library on the training path);
:func:`depth_png`, predict.py's picture, draws the same map with matplotlib's ``turbo`` and a
colour bar in metres. Prediction and
ground truth share one value range (:func:`shared_range`) so equal colours mean equal
depths side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

INVALID_RGB = (0, 0, 0)

# Coefficients of x^0..x^5 for red, green, blue (Turbo polynomial approximation).
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)


def turbo_lut(n: int = 256) -> np.ndarray:
    """[n, 3] uint8 Turbo colours from dark blue (0) through green to dark red (n - 1)."""
    x = np.linspace(0.0, 1.0, n)
    powers = np.stack([x**k for k in range(6)], axis=1)  # [n, 6]
    return (np.clip(powers @ _TURBO_COEFFS.T, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


_TURBO = turbo_lut()


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """[..] float64 numpy copy of an array or (any device / dtype) tensor, [1, H, W] -> [H, W]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x[0] if x.ndim == 3 and x.shape[0] == 1 else x


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def shared_range(*depths: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(vmin, vmax) over the valid (finite, > 0) pixels of all maps; (0, 1) if none is valid."""
    values = [d[_valid(d)] for d in map(_to_numpy, depths)]
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    return float(values.min()), float(values.max())


def colourise(
    depth: np.ndarray | torch.Tensor, vmin: float | None = None, vmax: float | None = None
) -> np.ndarray:
    """[H, W] depth -> [H, W, 3] uint8 Turbo image; near is blue, far is red, invalid is black.

    vmin / vmax default to the map's own valid range; pass :func:`shared_range` of several
    maps to compare them.
    """
    depth = _to_numpy(depth)
    if vmin is None or vmax is None:
        lo, hi = shared_range(depth)
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    valid = _valid(depth)
    scaled = (np.where(valid, depth, vmin) - vmin) / max(vmax - vmin, 1e-12)
    index = np.clip(np.round(scaled * (len(_TURBO) - 1)), 0, len(_TURBO) - 1).astype(np.int64)
    rgb = _TURBO[index]
    rgb[~valid] = INVALID_RGB
    return rgb


def error_map(
    pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, max_rel_error: float = 0.5
) -> np.ndarray:
    """[H, W] absolute relative error |pred - target| / target as [H, W, 3] uint8.

    Turbo from 0 (blue) to ``max_rel_error`` and above (red); pixels with invalid target black.
    """
    pred, target = _to_numpy(pred), _to_numpy(target)
    valid = _valid(target) & np.isfinite(pred)
    rel = np.where(valid, np.abs(pred - np.where(valid, target, 1.0)) / np.where(valid, target, 1.0), np.nan)
    # colourise treats <= 0 as invalid; offset so that a perfect pixel stays a valid colour.
    rgb = colourise(np.where(valid, rel + 1e-9, np.nan), vmin=0.0, vmax=max_rel_error)
    rgb[~valid] = INVALID_RGB
    return rgb


def depth_panel(
    image: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Side by side [H, 4W, 3] uint8: image | target | prediction (shared range) | relative error.

    image: [H, W, 3] uint8 (or [3, H, W] float in [0, 1]); pred, target: [H, W] metres.
    """
    rgb = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if rgb.ndim == 3 and rgb.shape[0] == 3 and rgb.shape[-1] != 3:
        rgb = rgb.transpose(1, 2, 0)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    vmin, vmax = shared_range(target, pred)
    tiles = [rgb, colourise(target, vmin, vmax), colourise(pred, vmin, vmax), error_map(pred, target)]
    return np.concatenate(tiles, axis=1)


def write_depth_colour_png(
    path: str | Path, depth: np.ndarray | torch.Tensor, vmin: float | None = None, vmax: float | None = None
) -> None:
    """Save :func:`colourise` of ``depth`` as an RGB PNG (give a shared vmin / vmax to compare files)."""
    Image.fromarray(colourise(depth, vmin, vmax)).save(Path(path))


def depth_png(path: Path, image: Image.Image, depth: np.ndarray) -> Path:
    """The image beside its depth map (metres, Turbo: near blue, far red) with a colour bar in metres."""
    from headstart.viz.figure import new_figure, save_figure, show_image

    depth = _to_numpy(depth)
    vmin, vmax = shared_range(depth)
    fig, (left, right) = new_figure(10, 4.4 * depth.shape[0] / max(1, depth.shape[1]) + 0.6, cols=2, wspace=0.08)
    show_image(left, image.convert("RGB").resize((depth.shape[1], depth.shape[0])), "input")
    shown = right.imshow(np.where(_valid(depth), depth, np.nan), cmap="turbo", vmin=vmin, vmax=max(vmax, vmin + 1e-6))
    right.set_axis_off()
    right.set_title(f"predicted depth: {vmin:.2f} to {vmax:.2f} m", fontsize=10)
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.02).set_label("depth (m)")
    return save_figure(fig, path)
