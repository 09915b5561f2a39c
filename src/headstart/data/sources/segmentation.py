"""Where segmentation examples come from: synthetic shapes, image + class-index mask folders,
YOLO-seg polygons, a ``datasets`` set (COCO JSON sources are in ``coco_seg.py``).

Every source yields ``SegSplit`` objects whose ``load(i)`` gives a ``SegExample``: the image
and a panoptic-style ground truth (segment id map, 0 = void/ignore, and the class of each
segment), from which semantic, instance and panoptic targets all derive. A class-index mask
becomes one segment per class (segment k + 1 is class k).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw

from headstart.data.errors import DataError, OnError, report_unpaired
from headstart.data.sources.images import IMAGE_EXTENSIONS, open_rgb
from headstart.data.splits import hold_out
from headstart.data.synthetic.seg_shapes import BACKGROUND, render_segmentation_scene

SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validation", "valid"), "test": ("test", "testing")}


@dataclass
class SegExample:
    """image: RGB. id_map: [H, W] int32 segment ids (0 = void). classes[k]: class of segment k + 1."""

    image: Image.Image
    id_map: np.ndarray
    classes: list[int]
    crowd: list[bool] = field(default_factory=list)


@dataclass
class SegSplit:
    size: int
    load: Callable[[int], SegExample]
    where: Callable[[int], str]

    def __len__(self) -> int:
        return self.size


@dataclass
class SegSource:
    """labels: class names (index = class id). things: ids of countable classes (the rest are stuff)."""

    labels: list[str]
    things: list[int]
    splits: dict[str, SegSplit]


# ---- classes --------------------------------------------------------------------------------------
class ClassMap:
    """Mask file values -> class ids 0..C-1, with an ignore value and ADE20K's ``reduce_labels``.

    classes: names (file value = index) or {file value: name} for sparse ids; ``classes_file``
    (YAML/JSON with ``classes`` or ``names``) gives the same. ``ignore_index``: the file value
    meaning "not labelled" (left out of the classes).
    """

    def __init__(
        self,
        classes: list[str] | dict[int, str] | None,
        classes_file: str | None,
        num_classes: int | None,
        ignore_index: int | None,
        reduce_labels: bool,
    ) -> None:
        if classes is None and classes_file is not None:
            classes = read_class_names(classes_file)
        if classes is None:
            if num_classes is None:
                raise DataError("segmentation data needs data.classes, data.classes_file or data.num_classes")
            classes = [f"class_{i}" for i in range(num_classes)]
        mapping = dict(enumerate(classes)) if isinstance(classes, list) else {int(k): str(v) for k, v in classes.items()}
        if ignore_index is not None:
            mapping.pop(ignore_index, None)
        self.values = sorted(mapping)
        self.labels = [mapping[v] for v in self.values]
        self.ignore_index = ignore_index
        self.reduce_labels = reduce_labels
        size = max(65536, (max(self.values) + 1) if self.values else 0)
        self.lut = np.full(size, -1, dtype=np.int64)  # -1: not a class
        self.lut[self.values] = np.arange(len(self.values))

    def semantic(self, values: np.ndarray, where: str) -> np.ndarray:
        """File values [H, W] -> segment id map (class k -> segment k + 1, ignore -> 0)."""
        values = values.astype(np.int64)
        if self.reduce_labels:  # ADE20K: 0 is "other", classes start at 1
            values = np.where(values == 0, -2, values - 1)
        ignore = values == -2
        if self.ignore_index is not None:
            ignore |= values == self.ignore_index
        mapped = np.where(ignore, -1, self.lut[np.clip(values, 0, len(self.lut) - 1)])
        bad = (~ignore) & ((mapped < 0) | (values >= len(self.lut)))
        if bad.any():
            found = sorted(set(np.unique(values[bad]).tolist()))[:10]
            raise DataError(
                f"{where}: label values {found} are not in the class set ({len(self.labels)} classes) "
                f"and not the ignore index ({self.ignore_index})"
            )
        return (mapped + 1).astype(np.int32)

    def of(self, value: int, where: str) -> int:
        """Class id of one annotation's class value (YOLO, COCO)."""
        if 0 <= value < len(self.lut) and self.lut[value] >= 0:
            return int(self.lut[value])
        raise DataError(f"{where}: class {value} is not in the class set {self.values[:20]}...")


def read_class_names(path: str) -> list[str] | dict[int, str]:
    """``classes`` or ``names`` of a YAML/JSON file (a list, or a mapping id -> name)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: classes file not found")
    data = json.loads(file.read_text()) if file.suffix == ".json" else yaml.safe_load(file.read_text())
    names = data.get("classes", data.get("names")) if isinstance(data, dict) else data
    if not isinstance(names, (list, dict)):
        raise DataError(f"{file}: no 'classes' or 'names' list or mapping in it")
    return names


def read_mask(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """A single-channel class-index PNG as [H, W] int64; its size must be the image's."""
    with Image.open(path) as mask:
        mask.load()
        if mask.mode not in ("L", "P", "I", "I;16", "I;16B", "1"):
            raise DataError(f"{path}: mask mode {mask.mode}; expected a single-channel class-index PNG")
        if mask.size != image_size:
            raise DataError(f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image is {image_size[0]}x{image_size[1]}")
        return np.asarray(mask).astype(np.int64)


def semantic_example(image: Image.Image, id_map: np.ndarray, num_classes: int) -> SegExample:
    return SegExample(image, id_map, list(range(num_classes)), [False] * num_classes)


# ---- synthetic --------------------------------------------------------------------------------------
def synthetic_source(shapes: tuple[str, ...], sizes: dict[str, int], seed: int, image_size: int, max_shapes: int) -> SegSource:
    """Background (stuff, class 0) plus shapes (things, classes 1..); disjoint seeded splits."""
    splits = {}
    for offset, (name, n) in enumerate(sizes.items()):
        split_seed = seed * 1000 + 500 + offset

        def load(i: int, s: int = split_seed) -> SegExample:
            image, id_map, classes = render_segmentation_scene(s, i, image_size, shapes, max_shapes)
            return SegExample(image, id_map, classes, [False] * len(classes))

        splits[name] = SegSplit(n, load, lambda i, name=name: f"synthetic[{name}] row {i}")
    return SegSource([BACKGROUND, *shapes], list(range(1, len(shapes) + 1)), splits)


# ---- folder: images + class-index masks --------------------------------------------------------------
def _files(root: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """Relative stem (no extension) -> file, for every file under ``root`` with one of ``extensions``."""
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*")) if p.suffix.lower() in extensions}


def _split_dirs(root: Path, image_dir: str, mask_dir: str) -> dict[str, tuple[Path, Path]]:
    """Known layouts -> our split -> (image folder, mask folder). Empty: one pool to split by fraction."""
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():  # Cityscapes
        image_dir, mask_dir = "leftImg8bit", "gtFine"
    elif (root / "images").is_dir() and (root / "annotations").is_dir() and image_dir == "images" and mask_dir == "masks":
        mask_dir = "annotations"  # ADE20K (ADEChallengeData2016)
    found: dict[str, tuple[Path, Path]] = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if (root / image_dir / name).is_dir() and (root / mask_dir / name).is_dir():
                found.setdefault(split, (root / image_dir / name, root / mask_dir / name))
            elif (root / name).is_dir() and (root / f"{name}annot").is_dir():  # CamVid (SegNet)
                found.setdefault(split, (root / name, root / f"{name}annot"))
    if not found and (root / image_dir).is_dir() and (root / mask_dir).is_dir():
        found["pool"] = (root / image_dir, root / mask_dir)
    return found


def _pairs(images: Path, masks: Path, image_suffix: str, mask_suffix: str, on_error: OnError = "raise") -> list[tuple[Path, Path]]:
    """(image, mask) for every mask; the image has the same relative name (suffixes swapped). An
    image without a mask is reported (data/errors.py:report_unpaired), never left out silently."""
    by_stem = _files(images, IMAGE_EXTENSIONS)
    pairs = []
    for stem, mask in _files(masks, (".png",)).items():
        if mask_suffix and not stem.endswith(mask_suffix):
            continue
        image_stem = stem[: len(stem) - len(mask_suffix)] + image_suffix if mask_suffix else stem + image_suffix
        if image_stem not in by_stem:
            raise DataError(f"{mask}: no image '{image_stem}.*' for this mask under {images}")
        pairs.append((by_stem[image_stem], mask))
    if not pairs:
        raise DataError(f"{masks}: no mask PNGs found (images in {images})")
    paired = {image for image, _ in pairs}
    report_unpaired([p for p in by_stem.values() if p not in paired], f"an image without a mask under {masks}", on_error)
    return pairs


def folder_source(
    path: str | None,
    split_paths: dict[str, str | None],
    image_dir: str,
    mask_dir: str,
    image_suffix: str,
    mask_suffix: str,
    class_map: ClassMap,
    val_fraction: float,
    seed: int,
    on_error: OnError = "raise",
) -> SegSource:
    """ADE20K, Cityscapes, CamVid or generic ``images/`` + ``masks/`` layouts (with split subfolders
    or one pool split by ``val_fraction``); or per-split roots in ``split_paths``."""
    dirs: dict[str, tuple[Path, Path]] = {}
    if path is not None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: data folder not found")
        dirs = _split_dirs(root, image_dir, mask_dir)
        if not dirs:
            raise DataError(f"{root}: no image/mask folders found (expected {image_dir}/ + {mask_dir}/, "
                            "ADE20K images/ + annotations/, Cityscapes leftImg8bit/ + gtFine/, or CamVid train/ + trainannot/)")
    for split, root_path in split_paths.items():
        if root_path is not None:
            dirs[split] = (Path(root_path) / image_dir, Path(root_path) / mask_dir)
    pairs = {split: _pairs(images, masks, image_suffix, mask_suffix, on_error) for split, (images, masks) in dirs.items()}
    if "pool" in pairs:
        pairs["train"], pairs["val"] = hold_out(pairs.pop("pool"), val_fraction, seed)
    if "train" not in pairs:
        raise DataError("data.source=folder needs data.path (with a training split) or data.train_path")
    if "val" not in pairs:
        pairs["train"], pairs["val"] = hold_out(pairs["train"], val_fraction, seed)
    num_classes = len(class_map.labels)

    def make(items: list[tuple[Path, Path]]) -> SegSplit:
        def load(i: int) -> SegExample:
            image_path, mask_path = items[i]
            image = open_rgb(image_path)
            id_map = class_map.semantic(read_mask(mask_path, image.size), str(mask_path))
            return semantic_example(image, id_map, num_classes)

        return SegSplit(len(items), load, lambda i: f"{items[i][0]} + {items[i][1]}")

    return SegSource(class_map.labels, [], {split: make(items) for split, items in pairs.items()})


# ---- YOLO-seg: images + polygon text files --------------------------------------------------------------
def read_yolo_polygons(path: Path, width: int, height: int, class_map: ClassMap) -> list[tuple[int, list[tuple[float, float]]]]:
    """Lines ``class x1 y1 x2 y2 ...`` (normalised) -> (class id, pixel polygon); errors name file:line."""
    polygons = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(v) for v in parts[1:]]
            value = int(parts[0])
        except ValueError as err:
            raise DataError(f"{where}: not 'class x1 y1 x2 y2 ...' numbers ({err})") from err
        if len(values) < 6 or len(values) % 2:
            raise DataError(f"{where}: a polygon needs an even number (>= 6) of coordinates, got {len(values)}")
        if min(values) < -0.01 or max(values) > 1.01:
            raise DataError(f"{where}: coordinates must be normalised to [0, 1]")
        points = [(x * width, y * height) for x, y in zip(values[::2], values[1::2])]
        polygons.append((class_map.of(value, where), points))
    return polygons


def paint_instances(size: tuple[int, int], masks: list[np.ndarray]) -> np.ndarray:
    """Instance masks [H, W] bool -> one id map (mask k -> id k + 1), biggest first so small ones stay visible."""
    id_map = np.zeros((size[1], size[0]), dtype=np.int32)
    for k in sorted(range(len(masks)), key=lambda k: -int(masks[k].sum())):
        id_map[masks[k]] = k + 1
    return id_map


def polygon_mask(size: tuple[int, int], points: list[tuple[float, float]]) -> np.ndarray:
    """A filled polygon as [H, W] bool. size: (W, H)."""
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def yolo_seg_source(
    path: str | None, image_dir: str, label_dir: str, class_map: ClassMap, val_fraction: float, seed: int
) -> SegSource:
    """``path/images[/split]`` + ``path/<label_dir>[/split]`` with one ``.txt`` per image (none: no objects)."""
    if path is None or not Path(path).is_dir():
        raise DataError(f"{path}: data folder not found (data.source=yolo_seg needs data.path)")
    root = Path(path)
    images, labels = root / image_dir, root / label_dir
    if not images.is_dir() or not labels.is_dir():
        raise DataError(f"{root}: expected {image_dir}/ and {label_dir}/ folders")
    files = _files(images, IMAGE_EXTENSIONS)
    items: dict[str, list[tuple[Path, Path]]] = {}
    for stem, image in files.items():
        first = stem.split("/")[0]
        split = next((ours for ours, names in SPLIT_NAMES.items() if first in names or first.startswith(names[0])), "pool")
        items.setdefault(split, []).append((image, labels / f"{stem}.txt"))
    if "train" not in items:
        items["train"] = items.pop("pool", [])
    if "val" not in items:
        items["train"], items["val"] = hold_out(items["train"], val_fraction, seed)

    def make(pairs: list[tuple[Path, Path]]) -> SegSplit:
        def load(i: int) -> SegExample:
            image_path, label_path = pairs[i]
            image = open_rgb(image_path)
            polygons = read_yolo_polygons(label_path, *image.size, class_map) if label_path.is_file() else []
            id_map = paint_instances(image.size, [polygon_mask(image.size, pts) for _, pts in polygons])
            return SegExample(image, id_map, [c for c, _ in polygons], [False] * len(polygons))

        return SegSplit(len(pairs), load, lambda i: str(pairs[i][1]))

    labels_list = class_map.labels
    return SegSource(labels_list, list(range(len(labels_list))), {s: make(p) for s, p in items.items()})


# ---- Hugging Face datasets (semantic masks) ------------------------------------------------------------
def hf_source(
    name: str, subset: str | None, image_column: str, mask_column: str, splits: dict[str, str | None],
    class_map: ClassMap, val_fraction: float, seed: int,
) -> SegSource:
    """A hub name or ``save_to_disk`` directory with an image column and a class-index mask column."""
    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    for column in (image_column, mask_column):
        if column not in tables["train"].features:
            raise DataError(f"{name}: no column '{column}' (columns: {list(tables['train'].features)})")
    num_classes = len(class_map.labels)

    def make(split: str, table: Any) -> SegSplit:
        def load(i: int) -> SegExample:
            row = table[i]
            image = row[image_column].convert("RGB")
            mask = row[mask_column]
            values = np.asarray(mask if not isinstance(mask, Image.Image) else mask.convert("L") if mask.mode == "RGB" else mask)
            if values.shape[:2] != (image.height, image.width):
                raise DataError(f"{name}[{split}] row {i}: mask {values.shape[:2]} but image {(image.height, image.width)}")
            return semantic_example(image, class_map.semantic(values, f"{name}[{split}] row {i}"), num_classes)

        return SegSplit(len(table), load, lambda i: f"{name}[{split}] row {i}")

    return SegSource(class_map.labels, [], {split: make(split, table) for split, table in tables.items()})
