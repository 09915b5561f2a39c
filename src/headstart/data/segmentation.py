"""DataModule for segmentation: source -> decode -> transforms.v2 (image + tv_tensors.Mask) -> batch.

Ground truth travels in panoptic form (segment id map + class per segment), so one pipeline
serves semantic, instance and panoptic training; the task derives the targets of its mode.
Batches hold:
    pixel_values [B, 3, S, S]; seg_ids [B, S, S] int64 (0 = void); semantic [B, S, S] int64
    (class id, ``IGNORE_INDEX`` on void); segment_labels / segment_crowd: B tensors [N_b];
    paths; and for evaluation the ground truth at the original size: orig_seg_ids
    (B tensors [H_b, W_b]) and target_sizes [(H_b, W_b)].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from headstart.data.base import DataModule
from headstart.data.errors import OnError, load_example, split_skipped
from headstart.data.inputs import expand_inputs
from headstart.data.sources.coco_seg import coco_source
from headstart.data.sources.images import IMAGE_EXTENSIONS, open_rgb
from headstart.data.sources.segmentation import (
    ClassMap,
    SegSource,
    SegSplit,
    folder_source,
    hf_source,
    synthetic_source,
    yolo_seg_source,
)
from headstart.data.splits import pick_source, require_hf_name

IGNORE_INDEX = -100  # void pixels in ``semantic`` (torch's cross-entropy default)


def segmentation_transforms(
    train: bool, size: int, mean: Sequence[float], std: Sequence[float], scale_range: Sequence[float], hflip: float
) -> v2.Compose:
    """Train: scale jitter, random crop (padded with void) to size x size, flip. Eval: resize to size x size.

    Masks (tv_tensors.Mask) follow the image with nearest-neighbour resampling.
    """
    if train:
        geometry = [
            v2.ScaleJitter((size, size), scale_range=tuple(scale_range), antialias=True),
            v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Mask: 0, "others": 0}),
            v2.RandomHorizontalFlip(hflip),
        ]
    else:
        geometry = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
                       v2.Normalize(list(mean), list(std))])


class SegmentationDataset(Dataset):
    """Transformed examples of one split (eval splits keep the original-size ground truth)."""

    def __init__(self, split: SegSplit, transform: Any, train: bool, on_error: OnError) -> None:
        self.split, self.transform, self.train, self.on_error = split, transform, train, on_error

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> Any:
        def load() -> dict[str, Any]:
            example = self.split.load(i)
            ids = torch.from_numpy(example.id_map.astype("int64"))
            image, mask = self.transform(example.image, tv_tensors.Mask(ids))
            sample = {
                "pixel_values": image,
                "seg_ids": mask.as_subclass(torch.Tensor),
                "segment_labels": torch.tensor(example.classes, dtype=torch.int64),
                "segment_crowd": torch.tensor(example.crowd or [False] * len(example.classes), dtype=torch.bool),
                "paths": self.split.where(i),
            }
            if not self.train:
                sample["orig_seg_ids"] = ids
            return sample

        return load_example(load, self.split.where(i), self.on_error)


class PredictImages(Dataset):
    """Image files for prediction (no ground truth)."""

    def __init__(self, paths: list[str], transform: Any, on_error: OnError) -> None:
        self.paths, self.transform, self.on_error = paths, transform, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        def load() -> dict[str, Any]:
            image = open_rgb(self.paths[i])
            return {"pixel_values": self.transform(image), "paths": self.paths[i], "size": (image.height, image.width)}

        return load_example(load, self.paths[i], self.on_error)


def collate_segmentation(samples: list[Any]) -> dict[str, Any]:
    """Stack images and id maps; derive the semantic map; keep per-image segment lists."""
    kept, skipped = split_skipped(samples)
    if not kept:
        return {"pixel_values": torch.empty(0, 3, 1, 1), "paths": [], "_skipped": skipped}
    batch: dict[str, Any] = {
        "pixel_values": torch.stack([s["pixel_values"] for s in kept]),
        "paths": [s["paths"] for s in kept],
        "_skipped": skipped,
    }
    if "seg_ids" not in kept[0]:  # prediction
        batch["target_sizes"] = [s["size"] for s in kept]
        return batch
    batch["seg_ids"] = torch.stack([s["seg_ids"] for s in kept])
    batch["segment_labels"] = [s["segment_labels"] for s in kept]
    batch["segment_crowd"] = [s["segment_crowd"] for s in kept]
    batch["semantic"] = torch.stack([
        torch.cat([torch.tensor([IGNORE_INDEX]), s["segment_labels"]])[s["seg_ids"]] for s in kept
    ])
    if "orig_seg_ids" in kept[0]:
        batch["orig_seg_ids"] = [s["orig_seg_ids"] for s in kept]
        batch["target_sizes"] = [tuple(s["orig_seg_ids"].shape) for s in kept]
    return batch


class SegmentationDataModule(DataModule):
    """``source``: synthetic shapes (default), folder, coco_panoptic, coco, yolo_seg or hf.

    Class-index masks: ``classes`` (names, or {file value: name}), ``classes_file``, or
    ``num_classes``; ``ignore_index`` is the file value meaning "not labelled";
    ``reduce_labels`` maps 0 to ignore and shifts the rest down (ADE20K).
    """

    def __init__(
        self,
        source: Literal["synthetic", "folder", "coco_panoptic", "coco", "yolo_seg", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        image_dir: str = "images",
        mask_dir: str | None = None,
        image_suffix: str = "",
        mask_suffix: str = "",
        classes: list[str] | dict[int, str] | None = None,
        classes_file: str | None = None,
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        reduce_labels: bool = False,
        image_size: int | None = None,
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: float = 0.5,
        synthetic_shapes: Sequence[str] = ("circle", "square", "triangle"),
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_image_size: int = 64,
        synthetic_max_shapes: int = 3,
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        image_column: str = "image",
        mask_column: str = "annotation",
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.path = path
        self.split_paths = {"train": train_path, "val": val_path, "test": test_path}
        self.val_fraction = val_fraction
        self.dirs = {"image_dir": image_dir, "mask_dir": mask_dir, "image_suffix": image_suffix, "mask_suffix": mask_suffix}
        self.class_args = (classes, classes_file, num_classes, ignore_index, reduce_labels)
        self.image_size = image_size
        self.scale_range = tuple(scale_range)
        self.hflip = hflip
        self.synthetic = (tuple(synthetic_shapes), dict(synthetic_sizes or {"train": 2000, "val": 200, "test": 200}),
                          synthetic_image_size, synthetic_max_shapes)
        self.hf = {"name": hf_name or path, "subset": hf_subset, "image_column": image_column, "mask_column": mask_column,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": None})}
        self.collate = collate_segmentation
        self.data: SegSource | None = None

    def _load(self) -> SegSource:
        if self.data is not None:
            return self.data
        dirs, fraction = self.dirs, self.val_fraction
        shapes, sizes, size, max_shapes = self.synthetic
        coco = lambda: coco_source(  # noqa: E731
            self.source, self.path, self.split_paths, dirs["image_dir"], dirs["mask_dir"], fraction, self.seed)
        self.data = pick_source(self.source, {
            "synthetic": lambda: synthetic_source(shapes, sizes, self.seed, size, max_shapes),
            "folder": lambda: folder_source(
                self.path, self.split_paths, dirs["image_dir"], dirs["mask_dir"] or "masks", dirs["image_suffix"],
                dirs["mask_suffix"], ClassMap(*self.class_args), fraction, self.seed, self.on_error),
            "coco_panoptic": coco, "coco": coco,
            "yolo_seg": lambda: yolo_seg_source(self.path, dirs["image_dir"], dirs["mask_dir"] or "labels",
                                                ClassMap(*self.class_args), fraction, self.seed),
            "hf": lambda: hf_source(require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["image_column"],
                                    self.hf["mask_column"], self.hf["splits"], ClassMap(*self.class_args), fraction,
                                    self.seed),
        }, "segmentation")
        return self.data

    def info(self) -> dict[str, Any]:
        data = self._load()
        return {"labels": list(data.labels), "thing_classes": list(data.things), "ignore_index": IGNORE_INDEX}

    def transform(self, train: bool) -> v2.Compose:
        size = self.image_size or self.spec.get("image_size", 512)
        return segmentation_transforms(train, size, self.spec.get("image_mean", (0.5,) * 3),
                                       self.spec.get("image_std", (0.5,) * 3), self.scale_range, self.hflip)

    def setup(self, stage: str | None = None) -> None:
        splits = self._load().splits
        if stage in (None, "fit", "validate", "test"):
            self.train_set = SegmentationDataset(splits["train"], self.transform(True), True, self.on_error)
            self.val_set = SegmentationDataset(splits["val"], self.transform(False), False, self.on_error)
            if "test" in splits:
                self.test_set = SegmentationDataset(splits["test"], self.transform(False), False, self.on_error)

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Files to predict on (a file, a folder or a glob)."""
        size = self.image_size or self.spec.get("image_size", 512)
        transform = v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize(list(self.spec.get("image_mean", (0.5,) * 3)), list(self.spec.get("image_std", (0.5,) * 3)))])
        self.predict_set = PredictImages(expand_inputs(inputs, IMAGE_EXTENSIONS), transform, self.on_error)
