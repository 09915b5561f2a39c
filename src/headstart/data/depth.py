"""DataModule for monocular depth: source -> (image, depth) -> joint geometry -> padded batch.

Depth is float32 metres with 0 marking invalid pixels. It is only ever resized with
nearest neighbour (``resize_depth``), so invalid pixels never blend into made-up depths;
flips and crops (torchvision.transforms.v2, depth as a ``tv_tensors.Mask``) move image
and depth together. Batches are padded to a common size (a multiple of the model's
``size_multiple``) with depth 0 there, so loss and metrics ignore the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from headstart.data.base import DataModule
from headstart.data.depth_sources import DepthSplit, folder_splits, hf_splits, list_splits, open_image, synthetic_splits
from headstart.data.errors import DataError, OnError, load_example, split_skipped
from headstart.data.inputs import expand_inputs
from headstart.data.sources.images import IMAGE_EXTENSIONS
from headstart.data.splits import pick_source, require_hf_name
from headstart.ops.depth_io import resize_depth

Size = int | Sequence[int] | None


def target_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """(H, W) to resize to: ``size`` [H, W] as given; an int is the longer side (aspect kept); None: unchanged."""
    if size is None:
        return height, width
    if isinstance(size, int):
        scale = size / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return int(size[0]), int(size[1])


def check_range(depth: np.ndarray, where: str, min_depth: float, max_depth: float) -> None:
    """A map whose valid pixels all lie outside (min_depth, max_depth) would be fully masked out:
    the loss is 0 and every metric empty, silently. The usual cause is the unit (millimetres)."""
    valid = depth[depth > 0]
    n_in = int(((valid > min_depth) & (valid < max_depth)).sum())
    if valid.size == 0 or n_in > 0:
        return
    if valid.min() >= max_depth:
        raise DataError(
            f"{where}: all {valid.size} valid pixels exceed data.max_depth={max_depth:g} (max {valid.max():.1f}): "
            "is the depth in millimetres? set data.npy_scale=1000 (.npy) or data.depth_scale (PNG units per metre)"
        )
    raise DataError(f"{where}: none of {valid.size} valid pixels lies in (data.min_depth={min_depth:g}, "
                    f"data.max_depth={max_depth:g}) (min {valid.min():.4g}, max {valid.max():.4g})")


def fit_depth(depth: np.ndarray, image_hw: tuple[int, int], where: str, resize: bool) -> np.ndarray:
    """Depth at the image's size: nearest-neighbour resized, or a DataError when that is off or impossible."""
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise DataError(f"{where}: depth must be a non-empty [H, W] map, got shape {tuple(depth.shape)}")
    if tuple(depth.shape) != tuple(image_hw):
        if not resize:
            raise DataError(
                f"{where}: depth is {depth.shape[0]}x{depth.shape[1]} but its image is {image_hw[0]}x{image_hw[1]} "
                f"(data.resize_depth=false)"
            )
        depth = resize_depth(depth, image_hw)
    if not (depth > 0).any():
        raise DataError(f"{where}: no valid depth (all pixels NaN, inf, zero or negative)")
    return np.ascontiguousarray(depth, dtype=np.float32)


class PairTransform:
    """(image uint8 [H, W, 3], depth [H, W] or None) -> (pixel_values [3, h, w], depth [h, w] or None).

    Resize to ``image_size`` (image bilinear, depth nearest); in training a joint random crop
    (padded with invalid depth when the image is smaller) and horizontal flip; then normalise.
    """

    def __init__(
        self, train: bool, image_size: Size, crop_size: Sequence[int] | None, hflip: float,
        mean: Sequence[float], std: Sequence[float],
    ) -> None:
        self.image_size = image_size
        geometry: list[Any] = []
        if train and crop_size is not None:
            fill = {tv_tensors.Image: 0, tv_tensors.Mask: 0.0}
            geometry.append(v2.RandomCrop((int(crop_size[0]), int(crop_size[1])), pad_if_needed=True, fill=fill))
        if train and hflip > 0:
            geometry.append(v2.RandomHorizontalFlip(hflip))
        self.geometry = v2.Compose(geometry) if geometry else None
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image: np.ndarray, depth: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        target = torch.from_numpy(depth) if depth is not None else None
        size = target_size(pixels.shape[-2], pixels.shape[-1], self.image_size)
        if size != tuple(pixels.shape[-2:]):
            pixels = TF.resize(pixels, list(size), antialias=True)
            target = resize_depth(target, size) if target is not None else None
        if self.geometry is not None and target is not None:
            pixels, mask = self.geometry(tv_tensors.Image(pixels), tv_tensors.Mask(target[None]))
            target = mask.as_subclass(torch.Tensor)[0]
        pixels = TF.normalize(pixels.as_subclass(torch.Tensor).float() / 255.0, self.mean, self.std)
        return pixels, target


class DepthDataset(Dataset):
    """Examples of one split: {"pixel_values" [3, h, w], "depth" [h, w], "paths"}."""

    def __init__(self, split: DepthSplit, transform: PairTransform, resize: bool, on_error: OnError,
                 depth_range: tuple[float, float] = (0.0, float("inf"))) -> None:
        self.split, self.transform, self.resize, self.on_error = split, transform, resize, on_error
        self.depth_range = depth_range

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> Any:
        where = self.split.where(i)

        def load() -> dict[str, Any]:
            image, depth = self.split.load(i)
            check_range(depth, where, *self.depth_range)
            pixels, target = self.transform(image, fit_depth(depth, image.shape[:2], where, self.resize))
            return {"pixel_values": pixels, "depth": target, "paths": where}

        return load_example(load, where, self.on_error)


class ImagePathsDataset(Dataset):
    """Image files for prediction: {"pixel_values", "paths", "orig_size" (H, W of the file)}."""

    def __init__(self, paths: list[str], transform: PairTransform, on_error: OnError) -> None:
        self.paths, self.transform, self.on_error = paths, transform, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        path = self.paths[i]

        def load() -> dict[str, Any]:
            image = open_image(Path(path))
            return {"pixel_values": self.transform(image, None)[0], "paths": path, "orig_size": image.shape[:2]}

        return load_example(load, path, self.on_error)


class PadCollate:
    """Pad a list of examples to one size (rounded up to ``multiple``): depth 0 (invalid) in the padding.

    Batch: pixel_values [B, 3, H, W], depth [B, H, W] (when examples have it), sizes [B, 2]
    (each example's own h, w), paths, orig_sizes (prediction), _skipped.
    """

    def __init__(self, multiple: int = 1) -> None:
        self.multiple = max(1, int(multiple))

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        if not kept:
            return {"pixel_values": torch.empty(0, 3, 1, 1), "depth": torch.empty(0, 1, 1), "sizes": torch.empty(0, 2, dtype=torch.long),
                    "paths": [], "_skipped": skipped}
        sizes = torch.tensor([list(s["pixel_values"].shape[-2:]) for s in kept], dtype=torch.long)
        height, width = (-(-int(sizes[:, k].max()) // self.multiple) * self.multiple for k in (0, 1))
        pixels = torch.zeros(len(kept), 3, height, width)
        for i, sample in enumerate(kept):
            h, w = sample["pixel_values"].shape[-2:]
            pixels[i, :, :h, :w] = sample["pixel_values"]
        batch: dict[str, Any] = {"pixel_values": pixels, "sizes": sizes, "paths": [s["paths"] for s in kept], "_skipped": skipped}
        if kept[0].get("depth") is not None:
            depth = torch.zeros(len(kept), height, width)
            for i, sample in enumerate(kept):
                h, w = sample["depth"].shape
                depth[i, :h, :w] = sample["depth"]
            batch["depth"] = depth
        if "orig_size" in kept[0]:
            batch["orig_sizes"] = [tuple(int(v) for v in s["orig_size"]) for s in kept]
        return batch


class DepthEstimationDataModule(DataModule):
    """``source``: synthetic rooms (default), a folder of pairs, NYU/KITTI-style list files, or ``datasets``.

    min_depth / max_depth: the valid depth range (also the decoder's output scale, max_depth).
    depth_scale: 16-bit PNG units per metre (NYU 1000 = millimetres, KITTI 256).
    npy_scale: .npy units per metre (1: metres; 1000: millimetres).
    png8_scale: 8-bit PNG units per metre; null (default): an 8-bit depth PNG is an error.
    eval_crop: metric crop for the task (garg / eigen for KITTI, eigen_nyu for NYU) or None.
    image_size: resize every image first: [H, W], or an int for the longer side, or None.
    crop_size: training random crop [H, W] (None: whole images); hflip: flip probability.
    resize_depth: resize depth maps of another size than their image (nearest); false: error.
    pad_to_multiple: pad batches to this multiple (None: the model's ``size_multiple``).
    """

    def __init__(
        self,
        source: Literal["synthetic", "folder", "nyu", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        depth_root: str | None = None,
        val_fraction: float = 0.1,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        depth_scale: float = 1000.0,
        npy_scale: float = 1.0,
        png8_scale: float | None = None,
        eval_crop: Literal["garg", "eigen", "eigen_nyu"] | None = None,
        image_size: Size = None,
        crop_size: Sequence[int] | None = None,
        hflip: float = 0.5,
        resize_depth: bool = True,
        pad_to_multiple: int | None = None,
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_image_size: Sequence[int] = (48, 64),
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        image_column: str = "image",
        depth_column: str = "depth_map",
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"data.min_depth={min_depth} and data.max_depth={max_depth}: need 0 <= min < max")
        self.source = source
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.depth_root = depth_root
        self.val_fraction = val_fraction
        self.min_depth, self.max_depth, self.depth_scale = float(min_depth), float(max_depth), float(depth_scale)
        self.npy_scale = float(npy_scale)
        self.png8_scale = None if png8_scale is None else float(png8_scale)
        self.eval_crop = eval_crop
        self.image_size = image_size if image_size is None or isinstance(image_size, int) else tuple(image_size)
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.hflip = hflip
        self.resize_depth = resize_depth
        self.pad_to_multiple = pad_to_multiple
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 200, "test": 200})
        self.synthetic_image_size = (int(synthetic_image_size[0]), int(synthetic_image_size[1]))
        self.hf = {"name": hf_name or path, "subset": hf_subset, "image_column": image_column, "depth_column": depth_column,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.collate = PadCollate(1)
        self.splits: dict[str, DepthSplit] = {}

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        super().configure(spec)
        self.collate = PadCollate(self.pad_to_multiple or int(spec.get("size_multiple", 1)))
        return {}

    def info(self) -> dict[str, Any]:
        """The task's decoder scale, loss range and metric crop come from the data."""
        return {"min_depth": self.min_depth, "max_depth": self.max_depth, "eval_crop": self.eval_crop}

    def _load_splits(self) -> None:
        if self.splits:
            return
        self.splits = pick_source(self.source, {
            "synthetic": lambda: synthetic_splits(self.synthetic_sizes, self.seed, self.synthetic_image_size, self.max_depth),
            "folder": lambda: folder_splits(**self.paths, val_fraction=self.val_fraction, seed=self.seed,
                                            scale=self.depth_scale, npy_scale=self.npy_scale, png8_scale=self.png8_scale),
            "nyu": lambda: list_splits(**self.paths, depth_root=self.depth_root, val_fraction=self.val_fraction,
                                       seed=self.seed, scale=self.depth_scale, on_error=self.on_error,
                                       npy_scale=self.npy_scale, png8_scale=self.png8_scale),
            "hf": lambda: hf_splits(require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["image_column"],
                                    self.hf["depth_column"], self.hf["splits"], self.val_fraction, self.seed,
                                    self.depth_scale),
        }, "depth estimation")

    def transform(self, train: bool) -> PairTransform:
        return PairTransform(train, self.image_size, self.crop_size, self.hflip,
                             self.spec.get("image_mean", (0.0,) * 3), self.spec.get("image_std", (1.0,) * 3))

    def setup(self, stage: str | None = None) -> None:
        self._load_splits()
        if stage in (None, "fit", "validate", "test"):
            depth_range = (self.min_depth, self.max_depth)

            def make(name: str, train: bool) -> DepthDataset:
                return DepthDataset(self.splits[name], self.transform(train), self.resize_depth, self.on_error, depth_range)

            self.train_set, self.val_set = make("train", True), make("val", False)
            if "test" in self.splits:
                self.test_set = make("test", False)

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Image files to predict depth for (a file, a folder or a glob)."""
        self.predict_set = ImagePathsDataset(expand_inputs(inputs, IMAGE_EXTENSIONS), self.transform(False), self.on_error)
