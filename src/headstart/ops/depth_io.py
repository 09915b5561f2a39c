"""Reading, resizing and writing depth maps (pure functions, numpy in and out).

Convention: depth is float32 metres, [H, W], and **0 marks an invalid pixel** (missing
LiDAR / Kinect returns, NaN or inf in the file, non-positive values). 16-bit PNGs store
``depth * scale`` as integers (NYUv2: scale 1000, millimetres; KITTI: scale 256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

PNG_MM_SCALE = 1000.0  # 16-bit PNG units per metre when writing (millimetres)


def read_depth(path: str | Path, scale: float = PNG_MM_SCALE, npy_scale: float = 1.0,
               png8_scale: float | None = None) -> np.ndarray:
    """Read a depth map in metres: [H, W] float32, 0 where invalid.

    ``.png``: single-channel 16-bit integers divided by ``scale`` (units per metre). An 8-bit
    PNG is divided by ``png8_scale``; without one it is an error: at the 16-bit scale its 0-255
    would read as millimetres (0-0.255 m, abs_rel 55 on real data, without a word), and an 8-bit
    "depth" PNG is most often a visualisation, not the measured depth.
    ``.npy``: numbers divided by ``npy_scale`` (units per metre: 1 for metres, 1000 for
    millimetres); [H, W] or [H, W, 1] / [1, H, W].
    Raises ValueError naming the file when it cannot be read or holds no valid depth.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        array = _read_png(path)
        if array.dtype == np.uint8 and png8_scale is None:
            raise ValueError(
                f"depth file {path}: an 8-bit PNG (values 0-255 would read as 0-{255 / scale:g} m at "
                f"data.depth_scale={scale:g}); give depth as 16-bit PNGs or .npy, or set data.png8_scale=<units per metre> "
                "if the 8-bit values really are depth"
            )
        raw = array.astype(np.float64) / (png8_scale if array.dtype == np.uint8 else scale)
    elif suffix == ".npy":
        raw = _read_npy(path) / npy_scale
    else:
        raise ValueError(f"depth file {path}: unsupported extension '{suffix}' (use .png or .npy)")
    depth = np.where(np.isfinite(raw) & (raw > 0), raw, 0.0).astype(np.float32)
    if not (depth > 0).any():
        raise ValueError(f"depth file {path}: no valid depth (all pixels NaN, inf, zero or negative)")
    return depth


def _read_png(path: Path) -> np.ndarray:
    """Integer array [H, W] from a single-channel PNG; ValueError naming the file otherwise."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.array(img)
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three for bad files
        raise ValueError(f"depth file {path}: cannot read PNG ({err})") from err
    if array.ndim != 2:
        raise ValueError(f"depth file {path}: expected a single-channel (16-bit) PNG, got mode {mode}")
    return array


def _read_npy(path: Path) -> np.ndarray:
    """Float array [H, W] from a .npy file; ValueError naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"depth file {path}: cannot read .npy ({err})") from err
    array = np.squeeze(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"depth file {path}: expected a numeric [H, W] array, got {array.dtype} {array.shape}")
    return array.astype(np.float64)


def resize_depth(depth: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Nearest-neighbour resize of [..., H, W] depth to ``size`` = (height, width).

    Nearest neighbour copies source pixels, so invalid (0) pixels never blend with valid
    ones into made-up depths, as bilinear resizing would. Source pixel for output i is
    floor((i + 0.5) * in / out) (pixel centres, as torch's ``nearest-exact``).
    Returns the same type (numpy or torch) as given.
    """
    out_h, out_w = size
    in_h, in_w = depth.shape[-2:]
    rows = np.minimum(((np.arange(out_h) + 0.5) * in_h / out_h).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * in_w / out_w).astype(np.int64), in_w - 1)
    if isinstance(depth, torch.Tensor):
        rows_t = torch.from_numpy(rows).to(depth.device)
        cols_t = torch.from_numpy(cols).to(depth.device)
        return depth.index_select(-2, rows_t).index_select(-1, cols_t)
    return depth[..., rows, :][..., cols]


def write_depth_png(path: str | Path, depth: np.ndarray, scale: float = PNG_MM_SCALE) -> None:
    """Write [H, W] metres as a 16-bit PNG of ``round(depth * scale)`` (default millimetres).

    Invalid pixels (NaN, inf, <= 0) are written as 0. Raises ValueError naming the file if a
    depth does not fit 16 bits (above 65.535 m at scale 1000: use a smaller scale).
    """
    path = Path(path)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth file {path}: expected [H, W] depth, got shape {depth.shape}")
    units = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * scale), 0.0)
    if units.max(initial=0.0) > np.iinfo(np.uint16).max:
        raise ValueError(
            f"depth file {path}: max depth {np.nanmax(depth[np.isfinite(depth)]):.3f} m does not fit a 16-bit PNG "
            f"at scale {scale} (max {np.iinfo(np.uint16).max / scale:.3f} m)"
        )
    Image.fromarray(units.astype(np.uint16)).save(path)
