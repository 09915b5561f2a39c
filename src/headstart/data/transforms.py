"""torchvision.transforms.v2 pipelines for image tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def classification_transforms(
    train: bool,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    eval_crop_ratio: float = 0.875,
) -> v2.Compose:
    """Train: random resized crop + horizontal flip. Eval: resize then centre crop."""
    if train:
        geometry = [
            v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(hflip),
        ]
    else:
        geometry = [
            v2.Resize(int(round(image_size / eval_crop_ratio)), antialias=True),
            v2.CenterCrop(image_size),
        ]
    return v2.Compose(
        [v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )
