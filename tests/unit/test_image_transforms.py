"""Image classification transforms: the crop range follows the model's input size, and the
evaluation crop never upsamples an image to cut it back (issue 22)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from headstart.data.transforms import ResizeForCentreCrop, classification_transforms, crop_scale_for


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
