"""DataModule for image classification: source -> decode -> transforms.v2 -> batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from headstart.data.base import DataModule
from headstart.data.errors import OnError, load_example, split_skipped
from headstart.data.inputs import expand_inputs
from headstart.data.sources.images import IMAGE_EXTENSIONS, ImageSplit, folder_splits, hf_splits, open_rgb, synthetic_splits
from headstart.data.splits import pick_source, require_hf_name
from headstart.data.synthetic.shapes import SHAPES
from headstart.data.transforms import classification_transforms


class ImageDataset(Dataset):
    """Decoded, transformed examples of one split: {"pixel_values", "labels", "paths"}."""

    def __init__(self, split: ImageSplit, transform: Any, on_error: OnError) -> None:
        self.split = split
        self.transform = transform
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> Any:
        def load() -> dict[str, Any]:
            image, label = self.split.load(i)
            return {"pixel_values": self.transform(image), "labels": label, "paths": self.split.where(i)}

        return load_example(load, self.split.where(i), self.on_error)


class PathsDataset(Dataset):
    """Image files for prediction (label -1)."""

    def __init__(self, paths: list[str], transform: Any, on_error: OnError) -> None:
        self.paths, self.transform, self.on_error = paths, transform, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        path = self.paths[i]
        return load_example(
            lambda: {"pixel_values": self.transform(open_rgb(path)), "labels": -1, "paths": path},
            path,
            self.on_error,
        )


def collate_images(samples: list[Any]) -> dict[str, Any]:
    """Stack images and labels; examples skipped under on_error=skip are listed in ``_skipped``."""
    kept, skipped = split_skipped(samples)
    if not kept:
        return {"pixel_values": torch.empty(0, 3, 1, 1), "labels": torch.empty(0, dtype=torch.long), "paths": [], "_skipped": skipped}
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in kept]),
        "labels": torch.tensor([s["labels"] for s in kept], dtype=torch.long),
        "paths": [s["paths"] for s in kept],
        "_skipped": skipped,
    }


class ImageClassificationDataModule(DataModule):
    """``source``: synthetic shapes (default), an ImageFolder tree, or a ``datasets`` set.

    The image size, mean and std come from the model through ``configure`` unless set here.
    """

    def __init__(
        self,
        source: Literal["synthetic", "folder", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        image_size: int | None = None,
        crop_scale: Sequence[float] | str = "auto",
        hflip: float = 0.5,
        eval_crop_ratio: float = 0.875,
        synthetic_classes: Sequence[str] = SHAPES[:6],
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_image_size: int = 64,
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        image_column: str = "image",
        label_column: str = "label",
        case_sensitive_labels: bool = False,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.crop_scale = crop_scale if isinstance(crop_scale, str) else tuple(crop_scale)
        self.hflip = hflip
        self.eval_crop_ratio = eval_crop_ratio
        self.case_sensitive_labels = case_sensitive_labels
        self.synthetic_classes = tuple(synthetic_classes)
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 400, "test": 400})
        self.synthetic_image_size = synthetic_image_size
        self.hf = {"name": hf_name or path, "subset": hf_subset, "image_column": image_column, "label_column": label_column,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.collate = collate_images
        self.labels: list[str] = []
        self.splits: dict[str, ImageSplit] = {}

    def _load_splits(self) -> None:
        if self.splits:
            return
        self.labels, self.splits = pick_source(self.source, {
            "synthetic": lambda: (list(self.synthetic_classes), synthetic_splits(
                self.synthetic_classes, self.synthetic_sizes, self.seed, self.synthetic_image_size)),
            "folder": lambda: folder_splits(**self.paths, val_fraction=self.val_fraction, seed=self.seed,
                                            case_sensitive_labels=self.case_sensitive_labels),
            "hf": lambda: hf_splits(
                require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["image_column"], self.hf["label_column"],
                self.hf["splits"], self.val_fraction, self.seed,
            ),
        }, "image classification")

    def info(self) -> dict[str, Any]:
        self._load_splits()
        return {"labels": list(self.labels)}

    def transform(self, train: bool) -> Any:
        size = self.image_size or self.spec.get("image_size", 224)
        return classification_transforms(
            train, size, self.spec.get("image_mean", (0.5,) * 3), self.spec.get("image_std", (0.5,) * 3),
            self.crop_scale, self.hflip, self.eval_crop_ratio,
        )

    def setup(self, stage: str | None = None) -> None:
        self._load_splits()
        if stage in (None, "fit", "validate", "test"):
            self.train_set = ImageDataset(self.splits["train"], self.transform(True), self.on_error)
            self.val_set = ImageDataset(self.splits["val"], self.transform(False), self.on_error)
            if "test" in self.splits:
                self.test_set = ImageDataset(self.splits["test"], self.transform(False), self.on_error)

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Files to predict on (a file, a folder or a glob)."""
        self.predict_set = PathsDataset(expand_inputs(inputs, IMAGE_EXTENSIONS), self.transform(False), self.on_error)
