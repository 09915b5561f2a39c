"""Turn normalised tensors back into pictures, write text on them, draw image classification."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def denormalize(pixel_values: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> list[np.ndarray]:
    """pixel_values [B, 3, H, W] normalised -> list of uint8 arrays [H, W, 3]."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    images = (pixel_values.detach().float().cpu() * std_t + mean_t).clamp(0, 1)
    return [(img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for img in images]


def labelled_image(image: np.ndarray | Image.Image, text: str, min_width: int = 160) -> Image.Image:
    """The image (upscaled to at least ``min_width``) with ``text`` on a band under it."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    pil = pil.convert("RGB")
    if pil.width < min_width:
        scale = min_width / pil.width
        pil = pil.resize((min_width, max(1, round(pil.height * scale))), Image.NEAREST)
    band = 14 * (1 + text.count("\n"))
    canvas = Image.new("RGB", (pil.width, pil.height + band + 4), (255, 255, 255))
    canvas.paste(pil, (0, 0))
    ImageDraw.Draw(canvas).text((3, pil.height + 2), text, fill=(0, 0, 0))
    return canvas


def classification_png(path: Path, image: Image.Image | np.ndarray, labels: Sequence[str], scores: Sequence[float]) -> Path:
    """The image beside a bar chart of its top-k classes (predict.py's picture)."""
    from headstart.viz.figure import new_figure, save_figure, show_image, top_k_bars

    fig, (left, right) = new_figure(9, 3.6, cols=2, width_ratios=[1, 1.2], wspace=0.45)
    show_image(left, image, f"{labels[0]} ({scores[0]:.2f})" if labels else "")
    top_k_bars(right, labels, scores, f"top-{len(labels)} classes")
    return save_figure(fig, path)
