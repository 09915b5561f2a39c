"""DataModule for object detection: source -> decode -> transforms.v2 (image + tv_tensors.BoundingBoxes) -> padded batch.

Boxes ride through the transforms as ``tv_tensors.BoundingBoxes`` (xyxy pixels). Before any
augmentation, boxes reaching out of the image are clipped and those left degenerate (under
1 px) are dropped and counted (``boxes_dropped``, logged per split); boxes a random crop
removes are augmentation, not counted. Batches hold:

    pixel_values [B, 3, H, W] padded to the batch's largest image (bottom/right);
    pixel_mask [B, H, W] long, 1 on real pixels; sizes [B, 2] each image's (h, w) before padding;
    orig_sizes [B, 2] the decoded file's (h, w); targets: B dicts {"class_labels" [N_b] long,
    "boxes" [N_b, 4] cxcywh normalised by the image's own size}; paths; boxes_dropped (0-d long).
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
from headstart.data.sources.detection import (
    BoxFormat,
    DetSource,
    DetSplit,
    coco_source,
    hf_source,
    synthetic_source,
    voc_source,
    yolo_source,
)
from headstart.data.sources.images import IMAGE_EXTENSIONS, open_rgb
from headstart.data.splits import pick_source, require_hf_name
from headstart.ops.boxes import xyxy_to_cxcywh

SANITIZE = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)])


def detection_transforms(
    train: bool, size: int, max_size: int, scales: Sequence[int], crop: float, hflip: float,
    mean: Sequence[float], std: Sequence[float],
) -> v2.Compose:
    """Train: flip, random (IoU-aware) crop with probability ``crop``, multi-scale resize (shortest
    side one of ``scales``, longest at most ``max_size``). Eval: shortest side ``size``, longest
    at most ``max_size``."""
    if train:
        geometry = [
            v2.RandomHorizontalFlip(hflip),
            v2.RandomApply([v2.RandomIoUCrop()], p=crop),
            v2.RandomShortestSize(list(scales), max_size=max_size),
            *SANITIZE.transforms,  # boxes the crop cut away
        ]
    else:
        geometry = [v2.Resize(size, max_size=max_size if max_size > size else None, antialias=True)]
    return v2.Compose([*geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def normalised_cxcywh(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, 4] xyxy pixels -> cxcywh in [0, 1] of an image of (height, width)."""
    return xyxy_to_cxcywh(boxes.float()) / torch.tensor([width, height, width, height], dtype=torch.float32)


class DetectionDataset(Dataset):
    """Transformed examples of one split (see the module docstring for the sample keys)."""

    def __init__(self, split: DetSplit, transform: v2.Compose, on_error: OnError) -> None:
        self.split, self.transform, self.on_error = split, transform, on_error

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> Any:
        def load() -> dict[str, Any]:
            example = self.split.load(i)
            height, width = example.image.height, example.image.width
            boxes = tv_tensors.BoundingBoxes(torch.from_numpy(example.boxes).reshape(-1, 4), format="XYXY",
                                             canvas_size=(height, width))
            target = {"boxes": boxes, "labels": torch.tensor(example.labels, dtype=torch.int64)}
            image, target = SANITIZE(v2.functional.to_image(example.image), target)
            dropped = len(example.labels) - len(target["labels"])
            image, target = self.transform(image, target)
            h, w = image.shape[-2:]
            return {
                "pixel_values": image.as_subclass(torch.Tensor),
                "target": {"class_labels": target["labels"],
                           "boxes": normalised_cxcywh(target["boxes"].as_subclass(torch.Tensor), h, w)},
                "size": (h, w),
                "orig_size": (height, width),
                "paths": self.split.where(i),
                "boxes_dropped": dropped,
            }

        return load_example(load, self.split.where(i), self.on_error)


class PredictImages(Dataset):
    """Image files for prediction (no targets)."""

    def __init__(self, paths: list[str], transform: v2.Compose, on_error: OnError) -> None:
        self.paths, self.transform, self.on_error = paths, transform, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        def load() -> dict[str, Any]:
            image = open_rgb(self.paths[i])
            pixels = self.transform(v2.functional.to_image(image)).as_subclass(torch.Tensor)
            return {"pixel_values": pixels, "size": tuple(pixels.shape[-2:]), "orig_size": (image.height, image.width),
                    "paths": self.paths[i]}

        return load_example(load, self.paths[i], self.on_error)


def collate_detection(samples: list[Any]) -> dict[str, Any]:
    """Pad images to the batch's largest height and width; pixel_mask marks the real pixels."""
    kept, skipped = split_skipped(samples)
    if not kept:
        return {"pixel_values": torch.empty(0, 3, 1, 1), "pixel_mask": torch.empty(0, 1, 1, dtype=torch.long),
                "targets": [], "paths": [], "sizes": torch.empty(0, 2, dtype=torch.long),
                "orig_sizes": torch.empty(0, 2, dtype=torch.long), "_skipped": skipped}
    height = max(s["size"][0] for s in kept)
    width = max(s["size"][1] for s in kept)
    pixels = torch.zeros(len(kept), 3, height, width)
    mask = torch.zeros(len(kept), height, width, dtype=torch.long)
    for b, s in enumerate(kept):
        h, w = s["size"]
        pixels[b, :, :h, :w] = s["pixel_values"]
        mask[b, :h, :w] = 1
    batch: dict[str, Any] = {
        "pixel_values": pixels,
        "pixel_mask": mask,
        "sizes": torch.tensor([s["size"] for s in kept], dtype=torch.long),
        "orig_sizes": torch.tensor([s["orig_size"] for s in kept], dtype=torch.long),
        "paths": [s["paths"] for s in kept],
        "_skipped": skipped,
    }
    if "target" in kept[0]:
        batch["targets"] = [s["target"] for s in kept]
        batch["boxes_dropped"] = torch.tensor(sum(s["boxes_dropped"] for s in kept))
    return batch


class ObjectDetectionDataModule(DataModule):
    """``source``: synthetic shapes (default), coco (instances JSON), yolo (txt folders), voc (XML) or hf.

    Sizes (``image_size`` shortest side, ``max_size`` longest) and mean/std come from the model
    through ``configure`` unless set here; ``scales`` are the training shortest sides (default:
    eight steps from 0.6 to 1.0 of ``image_size``, as DETR's 480-800 for 800).
    """

    def __init__(
        self,
        source: Literal["synthetic", "coco", "yolo", "voc", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        image_dir: str = "images",
        label_dir: str = "labels",
        classes: list[str] | dict[int, str] | None = None,
        classes_file: str | None = None,
        skip_difficult: bool = True,
        image_size: int | None = None,
        max_size: int | None = None,
        scales: Sequence[int] | None = None,
        crop: float = 0.5,
        hflip: float = 0.5,
        synthetic_shapes: Sequence[str] = ("circle", "square", "triangle"),
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_image_size: int = 64,
        synthetic_max_objects: int = 3,
        synthetic_size_range: Sequence[float] = (0.12, 0.3),
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        image_column: str = "image",
        objects_column: str = "objects",
        bbox_format: BoxFormat = "xywh",
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.path = path
        self.split_paths = {"train": train_path, "val": val_path, "test": test_path}
        self.val_fraction = val_fraction
        self.layout = {"image_dir": image_dir, "label_dir": label_dir, "classes": classes, "classes_file": classes_file,
                       "skip_difficult": skip_difficult}
        self.sizes = {"image_size": image_size, "max_size": max_size, "scales": list(scales) if scales else None}
        self.crop, self.hflip = crop, hflip
        self.synthetic = (tuple(synthetic_shapes), dict(synthetic_sizes or {"train": 2000, "val": 200, "test": 200}),
                          synthetic_image_size, synthetic_max_objects, tuple(synthetic_size_range))
        self.hf = {"name": hf_name or path, "subset": hf_subset, "image_column": image_column,
                   "objects_column": objects_column, "bbox_format": bbox_format,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.collate = collate_detection
        self.data: DetSource | None = None

    def _load(self) -> DetSource:
        if self.data is not None:
            return self.data
        layout, fraction = self.layout, self.val_fraction
        shapes, sizes, image_size, max_objects, size_range = self.synthetic
        self.data = pick_source(self.source, {
            "synthetic": lambda: synthetic_source(shapes, sizes, self.seed, image_size, max_objects, size_range),
            "coco": lambda: coco_source(self.path, self.split_paths, layout["image_dir"], fraction, self.seed),
            "yolo": lambda: yolo_source(self.path, layout["image_dir"], layout["label_dir"], layout["classes"],
                                        layout["classes_file"], fraction, self.seed, self.on_error),
            "voc": lambda: voc_source(self.path, layout["classes"], layout["classes_file"], layout["skip_difficult"],
                                      fraction, self.seed),
            "hf": lambda: hf_source(require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["splits"],
                                    self.hf["image_column"], self.hf["objects_column"], self.hf["bbox_format"],
                                    fraction, self.seed),
        }, "object detection")
        return self.data

    def info(self) -> dict[str, Any]:
        return {"labels": list(self._load().labels)}

    def transform(self, train: bool) -> v2.Compose:
        size = int(self.sizes["image_size"] or self.spec.get("image_size", 800))
        max_size = int(self.sizes["max_size"] or self.spec.get("max_size", 1333))
        scales = self.sizes["scales"] or sorted({int(round(size * (0.6 + 0.4 * k / 7))) for k in range(8)})
        return detection_transforms(train, size, max_size, scales, self.crop, self.hflip,
                                    self.spec.get("image_mean", (0.5,) * 3), self.spec.get("image_std", (0.5,) * 3))

    def setup(self, stage: str | None = None) -> None:
        splits = self._load().splits
        if stage in (None, "fit", "validate", "test"):
            self.train_set = DetectionDataset(splits["train"], self.transform(True), self.on_error)
            self.val_set = DetectionDataset(splits["val"], self.transform(False), self.on_error)
            if "test" in splits:
                self.test_set = DetectionDataset(splits["test"], self.transform(False), self.on_error)

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Files to predict on (a file, a folder or a glob)."""
        self.predict_set = PredictImages(expand_inputs(inputs, IMAGE_EXTENSIONS), self.transform(False), self.on_error)
