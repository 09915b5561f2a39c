"""Image classification transforms: the crop range follows the model's input size, and the
evaluation crop never upsamples an image to cut it back (issue 22)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop, v2

from headstart.data.transforms import (
    ClassificationTransform,
    ResizeForCentreCrop,
    classification_transforms,
    crop_scale_for,
    resized_crop,
    resized_crop_box,
)


def test_auto_crop_scale_follows_the_input_size() -> None:
    assert crop_scale_for("auto", 224) == (0.08, 1.0)
    assert crop_scale_for("auto", 32) == (0.35, 1.0)
    assert crop_scale_for([0.2, 0.9], 32) == (0.2, 0.9)
    with pytest.raises(ValueError, match="auto"):
        crop_scale_for("big", 32)


def test_eval_keeps_an_image_at_the_model_size_whole() -> None:
    image = torch.rand(3, 32, 32)
    out = classification_transforms(False, 32, (0.0,) * 3, (1.0,) * 3)(image)
    assert torch.allclose(out, image)  # the old resize to 37 then crop to 32 dropped the border
    old = v2.Compose([v2.Resize(37, antialias=True), v2.CenterCrop(32)])(image)
    assert not torch.allclose(old, image, atol=1e-2)


@pytest.mark.parametrize(("side", "expected"), [(300, 256), (240, 240), (200, 224), (100, 224)])
def test_eval_resize_is_imagenets_for_large_images_and_never_upsamples_for_the_crop(side: int, expected: int) -> None:
    image = torch.rand(3, side, side + 50)
    resized = ResizeForCentreCrop(224, 0.875)(image)
    assert min(resized.shape[-2:]) == expected
    if side >= 256:  # as torchvision's Resize(256): the ImageNet protocol is unchanged
        assert torch.equal(resized, v2.functional.resize(image, 256, antialias=True))


def test_train_transform_is_the_v2_crop_resize_flip_normalise_for_its_drawn_box() -> None:
    """Given the box and flip it draws, the one-call transform computes exactly what the composed
    ``transforms.v2`` pipeline computes for that box (same kernels, 8-bit crop and resize)."""
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    transform = classification_transforms(True, 32, mean, std, crop_scale=(0.35, 1.0), hflip=0.5)
    for seed in range(20):
        random.seed(seed)
        out = transform(image)
        random.seed(seed)
        top, left, h, w = resized_crop_box(40, 56, (0.35, 1.0), ClassificationTransform.RATIO)
        flip = random.random() < 0.5
        expected = v2.functional.resized_crop(image, top, left, h, w, [32, 32], antialias=True)
        expected = expected.flip(-1) if flip else expected
        expected = v2.functional.normalize(v2.functional.to_dtype(expected, torch.float32, scale=True), list(mean), list(std))
        assert out.shape == (3, 32, 32)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)  # float rounding of /255 only


def test_direct_resized_crop_is_torchvisions_bit_for_bit() -> None:
    """The direct kernel call gives v2's ``resized_crop`` output exactly: 8-bit and float images,
    crops that are upsampled, downsampled (antialias matters there) and already the output size."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=generator),
              torch.rand(3, 40, 56, generator=generator)]
    for image in images:
        for top, left, h, w, size in [(3, 4, 22, 26, 32), (0, 0, 40, 56, 24), (5, 7, 32, 32, 32), (1, 2, 37, 17, 64)]:
            expected = v2.functional.resized_crop(image, top, left, h, w, [size, size], antialias=True)
            got = resized_crop(image, top, left, h, w, size)
            assert got.dtype == image.dtype and got.shape == expected.shape
            assert torch.equal(got, expected), (image.dtype, top, left, h, w, size)


def test_crop_boxes_follow_torchvisions_distribution() -> None:
    """Area within the scale range, aspect within 3/4-4/3, and the same mean area as
    torchvision's ``RandomResizedCrop.get_params`` over many draws."""
    random.seed(0)
    torch.manual_seed(0)
    ours, theirs = [], []
    image = torch.zeros(3, 64, 48)
    for _ in range(4000):
        top, left, h, w = resized_crop_box(64, 48, (0.35, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top <= 64 - h and 0 <= left <= 48 - w
        ours.append(h * w / (64 * 48))
        t_top, t_left, t_h, t_w = RandomResizedCrop.get_params(image, [0.35, 1.0], [3 / 4, 4 / 3])
        theirs.append(t_h * t_w / (64 * 48))
    assert min(ours) > 0.3 and max(ours) <= 1.0
    assert abs(sum(ours) / len(ours) - sum(theirs) / len(theirs)) < 0.01


def test_crop_box_falls_back_to_the_central_crop_at_the_closest_aspect() -> None:
    random.seed(0)
    assert resized_crop_box(10, 100, (0.99, 1.0), (3 / 4, 4 / 3)) == (0, 43, 10, 13)  # too wide: height kept
    assert resized_crop_box(100, 10, (0.99, 1.0), (3 / 4, 4 / 3)) == (43, 0, 13, 10)


def test_train_augmentation_is_a_function_of_the_python_seed() -> None:
    """Per-example seeding (data/seeded.py) seeds Python's ``random``: the same seed gives the same
    crop and flip, another seed another one."""
    transform = classification_transforms(True, 32, (0.5,) * 3, (0.5,) * 3)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    random.seed(7)
    first = transform(image)
    random.seed(7)
    assert torch.equal(first, transform(image))
    random.seed(8)
    assert not torch.equal(first, transform(image))
