"""Draw segmentation maps: a fixed palette, colour overlays with a legend (predict.py), W&B mask panels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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


def segmentation_png(path: Path, image: Image.Image, class_map: np.ndarray, colours: np.ndarray,
                     legend: Sequence[tuple[int, str]], empty: str = "no classes predicted") -> Path:  # fmt: skip
    """The image beside its class overlay (class_map [H, W], -1: nothing) with a legend of
    (class id, text) swatches; ``empty`` is written on the overlay when the legend is empty."""
    from matplotlib.patches import Patch

    from headstart.viz.figure import new_figure, note, save_figure, show_image

    fig, (left, right) = new_figure(10, 4.6 * image.height / max(1, image.width) + 0.6, cols=2, wspace=0.05)
    show_image(left, image.convert("RGB").resize(class_map.shape[::-1]), "input")
    show_image(right, overlay(image, class_map, colours), "prediction")
    if legend:
        handles = [Patch(facecolor=colours[c % len(colours)] / 255, edgecolor="black", label=text) for c, text in legend]
        right.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False,
                     title="classes present", title_fontsize=9)
    else:
        note(right, empty)
    return save_figure(fig, path)
