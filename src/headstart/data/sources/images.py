"""Where labelled images come from: synthetic shapes, an ImageFolder tree, or a `datasets` set.

Each source yields ``ImageSplit`` objects: ``len``, ``load(i) -> (PIL image, class id)``
and ``where(i)`` (the file, or dataset and row, named in errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from headstart.data.errors import DataError
from headstart.data.labels import check_spellings, clean_label
from headstart.data.splits import hold_out, split_folders
from headstart.data.synthetic.shapes import render_shape_image

# Rendered synthetic images are kept (per process) while they fit in this many bytes: drawing
# them is the slowest part of a tiny model's step, and every epoch would redraw the same ones.
SYNTHETIC_CACHE_BYTES = 512 * 2**20

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class ImageSplit:
    size: int
    load: Callable[[int], tuple[Image.Image, int]]
    where: Callable[[int], str]

    def __len__(self) -> int:
        return self.size


# ---- synthetic ------------------------------------------------------------------------------
def synthetic_splits(
    classes: tuple[str, ...], sizes: dict[str, int], seed: int, image_size: int
) -> dict[str, ImageSplit]:
    """Disjoint splits: each split draws from its own seed stream; small splits are drawn once."""
    splits = {}
    for offset, (name, n) in enumerate(sizes.items()):
        split_seed = seed * 1000 + offset

        def render(i: int, s: int = split_seed) -> tuple[Image.Image, int]:
            return render_shape_image(s, i, image_size, classes)

        load = render
        if n * image_size * image_size * 3 <= SYNTHETIC_CACHE_BYTES:
            load = _cached(render)
        splits[name] = ImageSplit(n, load, lambda i, name=name: f"synthetic[{name}] row {i}")
    return splits


def _cached(render: Callable[[int], tuple[Image.Image, int]]) -> Callable[[int], tuple[Image.Image, int]]:
    """``render`` memoised; callers get a copy (transforms must not touch the kept image)."""
    kept: dict[int, tuple[Image.Image, int]] = {}

    def load(i: int) -> tuple[Image.Image, int]:
        if i not in kept:
            kept[i] = render(i)
        image, label = kept[i]
        return image.copy(), label

    return load


# ---- folder ---------------------------------------------------------------------------------
def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to RGB (fully, so truncated files fail here, not later)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def list_class_folder(root: Path) -> list[tuple[Path, str]]:
    """(file, class name) for every image under ``root/<class>/``."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected <class>/<image> subfolders)")
    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        found = [(path, class_dir.name) for path in sorted(class_dir.rglob("*"))
                 if path.suffix.lower() in IMAGE_EXTENSIONS]
        if not found:  # left out, its class would silently vanish from the label set
            raise DataError(f"{class_dir}: class folder has no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        items += found
    if not items:
        raise DataError(f"{root}: no images found in <class>/ subfolders (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return items


def folder_split(items: list[tuple[Path, str]], labels: list[str]) -> ImageSplit:
    index = {name: i for i, name in enumerate(labels)}
    for path, name in items:
        if name not in index:
            raise DataError(f"{path}: class '{name}' is not among the training classes {labels}")
    return ImageSplit(
        len(items),
        lambda i: (open_rgb(items[i][0]), index[items[i][1]]),
        lambda i: str(items[i][0]),
    )


def folder_splits(
    path: str | None,
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    val_fraction: float,
    seed: int,
    case_sensitive_labels: bool = False,
) -> tuple[list[str], dict[str, ImageSplit]]:
    """ImageFolder layout: ``path`` holding train/ val/ [test/], or one class tree split by fraction,
    or explicit per-split paths. Returns (class names, splits). Folder names are class names as
    data/labels.py reads them (``Cat/`` beside ``cat/`` is an error unless case-sensitive)."""
    paths = split_folders(path, train_path, val_path, test_path)

    def listed(split: str) -> list[tuple[Path, str]]:
        items = list_class_folder(Path(paths[split]))
        if split == "train":
            check_spellings([name for _, name in items], str(paths["train"]), case_sensitive_labels)
        return [(file, clean_label(name)) for file, name in items]

    train_items = listed("train")
    labels = sorted({name for _, name in train_items})
    split_items: dict[str, list[tuple[Path, str]]] = {"train": train_items}
    if paths["val"] is None:
        split_items["train"], split_items["val"] = hold_out(train_items, val_fraction, seed)
    else:
        split_items["val"] = listed("val")
    if paths["test"] is not None:
        split_items["test"] = listed("test")
    return labels, {name: folder_split(items, labels) for name, items in split_items.items()}


# ---- Hugging Face datasets ----------------------------------------------------------------------
def hf_splits(
    name: str,
    subset: str | None,
    image_column: str,
    label_column: str,
    splits: dict[str, str | None],
    val_fraction: float,
    seed: int,
) -> tuple[list[str], dict[str, ImageSplit]]:
    """A hub dataset name or a local ``save_to_disk`` directory. ``splits``: our split -> theirs."""
    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    feature = tables["train"].features.get(label_column)
    if feature is None:
        raise DataError(f"{name}: no column '{label_column}' (columns: {list(tables['train'].features)})")
    if hasattr(feature, "names"):
        labels = list(feature.names)
    else:
        labels = [str(v) for v in sorted(set(tables["train"][label_column]))]
    lookup = {label: i for i, label in enumerate(labels)}

    def make(split: str, table: Any) -> ImageSplit:
        def load(i: int) -> tuple[Image.Image, int]:
            row = table[i]
            image = row[image_column]
            image = image if isinstance(image, Image.Image) else open_rgb(image["path"])
            label = row[label_column]
            return image.convert("RGB"), int(label) if hasattr(feature, "names") else lookup[str(label)]

        return ImageSplit(len(table), load, lambda i: f"{name}[{split}] row {i}")

    return labels, {split: make(split, table) for split, table in tables.items()}
