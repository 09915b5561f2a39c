"""torchvision.transforms.v2 pipelines for image tasks."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

# Random resized crop's area range. Inception's (0.08, 1) was made for 224-pixel crops of larger
# photos; below SMALL_INPUT pixels (CIFAR-sized inputs, the tiny presets) an 8 % crop is a few
# pixels wide. Measured (tiny ViT from scratch, CIFAR small 2,500/500, 30 epochs, seed 42): val acc
# 0.324 with (0.08, 1) vs 0.380 with (0.35, 1), eval crops alike.
IMAGENET_CROP_SCALE = (0.08, 1.0)
SMALL_INPUT_CROP_SCALE = (0.35, 1.0)
SMALL_INPUT = 96


def crop_scale_for(crop_scale: Sequence[float] | str, image_size: int) -> tuple[float, float]:
    """``crop_scale`` as given, or for ``"auto"`` the range for a model input of ``image_size``."""
    if isinstance(crop_scale, str):
        if crop_scale != "auto":
            raise ValueError(f"data.crop_scale={crop_scale!r} is not auto nor [min, max]")
        return SMALL_INPUT_CROP_SCALE if image_size < SMALL_INPUT else IMAGENET_CROP_SCALE
    low, high = (float(v) for v in crop_scale)
    return low, high


class ResizeForCentreCrop(torch.nn.Module):
    """Resize the shorter side to ``image_size / crop_ratio`` for the centre crop, never upsampling
    for it: an image smaller than that keeps its size (at least ``image_size``), so a CIFAR image at
    the model's 32 pixels is evaluated whole instead of blown up to 37 and cut back to 32."""

    def __init__(self, image_size: int, crop_ratio: float) -> None:
        super().__init__()
        self.image_size, self.target = image_size, int(round(image_size / crop_ratio))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shorter = min(v2.functional.get_size(image))
        size = min(max(shorter, self.image_size), self.target)
        return image if size == shorter else v2.functional.resize(image, size, antialias=True)


def resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering ``scale`` of the area with aspect in ``ratio``:
    torchvision's ``RandomResizedCrop.get_params`` (10 tries, then the central crop at the closest
    aspect), drawn from Python's ``random`` (seeded per example, see ``data/seeded.py``) in a few
    microseconds instead of ten small tensor draws (80 us an image)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * random.uniform(scale[0], scale[1])
        aspect = math.exp(random.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: torch.Tensor, top: int, left: int, height: int, width: int, size: int) -> torch.Tensor:
    """``v2.functional.resized_crop(image, top, left, height, width, [size, size], antialias=True)``
    for a [C, H, W] tensor inside the image, with the same kernel (bilinear with antialias, on uint8
    the 8-bit AVX2 path) and the same output bit for bit, called directly: torchvision's
    dispatch, checks and reshapes around it were half of its 47 us an image on a CIFAR crop (26 us
    this way)."""
    crop = image[..., top:top + height, left:left + width]
    if height == size and width == size:
        return crop
    return torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)[0]


class ClassificationTransform(torch.nn.Module):
    """One image (PIL, or a [3, H, W] uint8 / float tensor) -> the normalised float [3, S, S] input.

    Train: random resized crop (area ``crop_scale``, aspect 3/4-4/3) + horizontal flip. Eval:
    resize (never up, see :class:`ResizeForCentreCrop`) then centre crop.

    The operations of the ``transforms.v2`` pipeline ``ToImage, RandomResizedCrop,
    RandomHorizontalFlip, ToDtype, Normalize`` (the same crop and resize kernels, on the 8-bit
    image) in one call on a plain tensor, with the crop box and flip drawn from Python's ``random``:
    the composed pipeline spent most of its time in per-transform dispatch and tiny tensor draws
    (0.28 ms an image for CIFAR, now 0.10 ms, vs 0.14 ms for torchvision's classic CIFAR recipe),
    which made the data 13 % of a tiny ViT's training step (issue 24).
    """

    RATIO = (3.0 / 4.0, 4.0 / 3.0)

    def __init__(self, train: bool, image_size: int, mean: Sequence[float], std: Sequence[float],
                 crop_scale: Sequence[float] | str = "auto", hflip: float = 0.5, eval_crop_ratio: float = 0.875) -> None:
        super().__init__()
        self.train_mode, self.image_size, self.hflip = train, image_size, hflip
        self.scale = crop_scale_for(crop_scale, image_size)
        self.eval_resize = ResizeForCentreCrop(image_size, eval_crop_ratio)
        self.mean = torch.tensor([float(m) for m in mean]).view(-1, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(-1, 1, 1)

    def forward(self, image: Any) -> torch.Tensor:
        x = image if isinstance(image, torch.Tensor) else v2.functional.pil_to_tensor(image)
        x = x.as_subclass(torch.Tensor)
        size = [self.image_size, self.image_size]
        if self.train_mode:
            top, left, height, width = resized_crop_box(x.shape[-2], x.shape[-1], self.scale, self.RATIO)
            x = resized_crop(x, top, left, height, width, self.image_size)
            if self.hflip > 0 and random.random() < self.hflip:
                x = x.flip(-1)
        else:
            x = v2.functional.center_crop(self.eval_resize(x), size)
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        return x.sub_(self.mean).div_(self.std)


def classification_transforms(
    train: bool,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: Sequence[float] | str = "auto",
    hflip: float = 0.5,
    eval_crop_ratio: float = 0.875,
) -> ClassificationTransform:
    """The image classification transform for one split (see :class:`ClassificationTransform`)."""
    return ClassificationTransform(train, image_size, mean, std, crop_scale, hflip, eval_crop_ratio)
