"""Draw segmentation maps: a fixed palette, colour overlays on images, W&B mask panels."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def palette(n: int, seed: int = 3) -> np.ndarray:
    """[n, 3] uint8 distinct-looking colours (the same for the same n and seed)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 256, size=(max(n, 1), 3))
    base = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]])
    colours[: min(n, len(base))] = base[: min(n, len(base))]
    return colours.astype(np.uint8)


def overlay(image: Image.Image, index_map: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend colours[index_map] over the image; pixels with index < 0 stay as they are. index_map: [H, W]."""
    base = np.asarray(image.convert("RGB").resize((index_map.shape[1], index_map.shape[0])), dtype=np.float32)
    on = index_map >= 0
    painted = base.copy()
    painted[on] = (1 - alpha) * base[on] + alpha * colours[index_map[on] % len(colours)].astype(np.float32)
    return Image.fromarray(painted.round().clip(0, 255).astype(np.uint8))


def wandb_mask_image(image: np.ndarray, pred: np.ndarray, target: np.ndarray | None, labels: list[str], caption: str) -> Any:
    """A wandb.Image with predicted (and true) class masks; ignore/void shows as class len(labels)."""
    import wandb

    class_labels = {i: name for i, name in enumerate(labels)}
    class_labels[len(labels)] = "ignore"
    masks = {"predictions": {"mask_data": pred.astype(np.int64), "class_labels": class_labels}}
    if target is not None:
        masks["ground_truth"] = {"mask_data": target.astype(np.int64), "class_labels": class_labels}
    return wandb.Image(image, masks=masks, caption=caption)
