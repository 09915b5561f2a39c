"""Where images with boxes come from: synthetic shapes, COCO instances JSON, YOLO txt, Pascal VOC XML, `datasets`.

Each source gives class names and ``DetSplit`` objects: ``len``, ``load(i) -> DetExample``
(boxes as xyxy pixels of the decoded image) and ``where(i)`` (the file named in errors).
Annotations are parsed when an example is loaded, so a bad one fails naming its file and row
(or annotation id), or is counted and skipped under ``data.on_error=skip``:
negative box sizes, class ids out of range and missing image files are errors; boxes of zero
size, or reaching out of the image, are clipped or dropped later (and counted) by the
transforms.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from headstart.data.errors import DataError, OnError, report_unpaired
from headstart.data.sources.images import IMAGE_EXTENSIONS, open_rgb
from headstart.data.sources.segmentation import read_class_names
from headstart.data.splits import hold_out
from headstart.data.synthetic.det_shapes import render_detection_scene

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]


@dataclass
class DetExample:
    image: Image.Image
    boxes: np.ndarray  # [N, 4] float32 xyxy pixels
    labels: list[int]  # class id per box


@dataclass
class DetSplit:
    size: int
    load: Callable[[int], DetExample]
    where: Callable[[int], str]

    def __len__(self) -> int:
        return self.size


@dataclass
class DetSource:
    labels: list[str]
    splits: dict[str, DetSplit]


def to_xyxy(boxes: np.ndarray, fmt: BoxFormat) -> np.ndarray:
    """[N, 4] boxes in ``fmt`` -> xyxy (same units)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if fmt == "xyxy":
        return boxes
    if fmt == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)


def check_example(boxes: np.ndarray, labels: list[int], num_classes: int, where: str, rows: list[str] | None = None) -> None:
    """Negative sizes, non-finite coordinates and class ids outside [0, num_classes) are DataErrors.

    rows: how to name box k in the message (a line number, an annotation id); default ``box k``.
    """
    for k, (box, label) in enumerate(zip(boxes, labels)):
        row = rows[k] if rows else f"box {k}"
        if not np.isfinite(box).all():
            raise DataError(f"{where}: {row}: box {box.tolist()} is not finite")
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"{where}: {row}: box has negative size ({box[2] - box[0]:g} x {box[3] - box[1]:g})")
        if not 0 <= label < num_classes:
            raise DataError(f"{where}: {row}: class {label} is out of range (the data has {num_classes} classes)")


def with_validation(labels: list[str], splits: dict[str, list[Any]], make: Callable[[str, list[Any]], DetSplit],
                    val_fraction: float, seed: int) -> DetSource:
    """Hold out ``val_fraction`` of train when there is no val split, then build every split."""
    if "val" not in splits:
        splits["train"], splits["val"] = hold_out(splits["train"], val_fraction, seed)
    return DetSource(labels, {name: make(name, items) for name, items in splits.items()})


# ---- synthetic ------------------------------------------------------------------------------------
def synthetic_source(shapes: tuple[str, ...], sizes: dict[str, int], seed: int, image_size: int, max_objects: int,
                     size_range: tuple[float, float]) -> DetSource:
    """Disjoint splits, each from its own seed stream."""
    splits = {}
    for offset, (name, n) in enumerate(sizes.items()):
        def load(i: int, s: int = seed * 1000 + offset) -> DetExample:
            return DetExample(*render_detection_scene(s, i, image_size, shapes, max_objects, size_range))

        splits[name] = DetSplit(n, load, lambda i, name=name: f"synthetic[{name}] row {i}")
    return DetSource(list(shapes), splits)


# ---- COCO instances ---------------------------------------------------------------------------------
def coco_source(path: str | None, split_paths: dict[str, str | None], image_dir: str, val_fraction: float, seed: int) -> DetSource:
    """COCO instances JSONs (``train_path`` / ``val_path`` / ``test_path``, relative to ``path``;
    default ``path/annotations.json``); images in ``image_dir`` (``{split}`` -> train/val/test).
    Classes are the train JSON's categories sorted by id; crowd annotations are left out, as DETR does."""
    root = Path(path) if path else None
    files = {s: (Path(v) if Path(v).is_absolute() or root is None else root / v) for s, v in split_paths.items() if v}
    if "train" not in files and root is not None and (root / "annotations.json").is_file():
        files["train"] = root / "annotations.json"
    if "train" not in files:
        raise DataError("data.source=coco needs data.train_path (a COCO instances JSON) or data.path holding annotations.json")
    tables = {split: _read_coco(file) for split, file in files.items()}
    cats = sorted(tables["train"]["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    items: dict[str, list[Any]] = {}
    for split, data in tables.items():
        folder = Path(image_dir.format(split=split))
        folder = folder if folder.is_absolute() else (root if root is not None else files[split].parent.parent) / folder
        by_image: dict[Any, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        items[split] = [(folder / img["file_name"], by_image.get(img["id"], []), files[split]) for img in data["images"]]
        if not items[split]:
            raise DataError(f"{files[split]}: no images listed")

    def make(split: str, entries: list[Any]) -> DetSplit:
        return DetSplit(len(entries), lambda i: _coco_example(*entries[i], cat_index), lambda i: str(entries[i][0]))

    return with_validation([c["name"] for c in cats], items, make, val_fraction, seed)


def _read_coco(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise DataError(f"{file}: annotation file not found")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: not valid JSON ({err})") from err
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"{file}: no '{key}' list (not a COCO instances file)")
    return data


def _coco_example(image_path: Path, anns: list[dict], json_file: Path, cat_index: dict[int, int]) -> DetExample:
    image = open_rgb(image_path)
    kept = [a for a in anns if not a.get("iscrowd", 0)]
    where = f"{json_file} (image {image_path.name})"
    rows = [f"annotation {a.get('id')}" for a in kept]
    for a, row in zip(kept, rows):
        if not isinstance(a.get("bbox"), list) or len(a["bbox"]) != 4:
            raise DataError(f"{where}: {row}: bbox must be [x, y, w, h], got {a.get('bbox')}")
    boxes = to_xyxy(np.array([a["bbox"] for a in kept], dtype=np.float32), "xywh")
    labels = [cat_index.get(a.get("category_id"), -1) for a in kept]
    for a, label, row in zip(kept, labels, rows):
        if label < 0:
            raise DataError(f"{where}: {row}: category {a.get('category_id')} is not among the train JSON's categories")
    check_example(boxes, labels, len(cat_index), where, rows)
    return DetExample(image, boxes, labels)


# ---- YOLO -------------------------------------------------------------------------------------------
def yolo_source(path: str | None, image_dir: str, label_dir: str, classes: list[str] | dict | None,
                classes_file: str | None, val_fraction: float, seed: int, on_error: OnError = "raise") -> DetSource:
    """``path/<image_dir>/[split/]*.jpg`` with ``path/<label_dir>/[split/]*.txt`` (``class cx cy w h``,
    normalised); an image without a label file has no objects; a label file without its image is
    reported (data/errors.py:report_unpaired), never dropped silently. Splits: ``train*`` / ``val*`` /
    ``test*`` subfolders of ``image_dir`` when present, else ``val_fraction`` held out. Classes:
    ``classes``, ``classes_file``, or ``path/data.yaml``'s ``names``."""
    if path is None or not Path(path).is_dir():
        raise DataError(f"{path}: data folder not found (data.source=yolo needs data.path)")
    root = Path(path)
    images = root / image_dir
    if not images.is_dir():
        raise DataError(f"{images}: image folder not found (set data.image_dir)")
    names = classes if classes is not None else read_class_names(classes_file or str(root / "data.yaml"))
    labels = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    items: dict[str, list[Any]] = {}
    for sub in sorted(p for p in images.iterdir() if p.is_dir()):
        split = next((s for s in ("train", "val", "test") if sub.name.startswith(s)), None)
        if split is not None:
            items[split] = items.get(split, []) + _yolo_pairs(sub, root / label_dir / sub.name)
    if "train" not in items:
        items = {"train": _yolo_pairs(images, root / label_dir)}
    if not items["train"]:
        raise DataError(f"{images}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    used = {label for pairs in items.values() for _, label in pairs}
    labelled = root / label_dir
    orphans = sorted(p for p in labelled.rglob("*.txt") if p not in used and p.name != "classes.txt") if labelled.is_dir() else []
    report_unpaired(orphans, f"a label file without its image under {images}", on_error)

    def make(split: str, pairs: list[tuple[Path, Path]]) -> DetSplit:
        return DetSplit(len(pairs), lambda i: _yolo_example(*pairs[i], len(labels)), lambda i: str(pairs[i][0]))

    return with_validation(labels, items, make, val_fraction, seed)


def _yolo_pairs(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    return [(p, labels / p.relative_to(images).with_suffix(".txt"))
            for p in sorted(images.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]


def _yolo_example(image_path: Path, label_path: Path, num_classes: int) -> DetExample:
    image = open_rgb(image_path)
    rows, values = [], []
    if label_path.is_file():
        for n, line in enumerate(label_path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 5:
                    raise ValueError(f"{len(fields)} fields")
                values.append([float(f) for f in fields])
            except ValueError as err:
                raise DataError(f"{label_path}:{n}: expected 'class cx cy w h', got '{line.strip()[:80]}' ({err})") from err
            rows.append(f"line {n}")
    table = np.asarray(values, dtype=np.float32).reshape(-1, 5)
    labels = [int(c) if float(c).is_integer() else -1 for c in table[:, 0]]
    scale = np.array([image.width, image.height, image.width, image.height], dtype=np.float32)
    boxes = to_xyxy(table[:, 1:] * scale, "cxcywh")
    check_example(boxes, labels, num_classes, str(label_path), rows)
    return DetExample(image, boxes, labels)


# ---- Pascal VOC -------------------------------------------------------------------------------------
def voc_source(path: str | None, classes: list[str] | dict | None, classes_file: str | None, skip_difficult: bool,
               val_fraction: float, seed: int) -> DetSource:
    """VOC layout: ``path/Annotations/*.xml``, ``path/JPEGImages/``, splits from
    ``ImageSets/Main/{train,val,test}.txt`` when present (else ``val_fraction`` held out).
    Classes: ``classes``, ``classes_file``, or every object name in the XMLs, sorted."""
    if path is None or not (Path(path) / "Annotations").is_dir():
        raise DataError(f"{path}: no Annotations/ folder (data.source=voc needs data.path at a VOC root)")
    root = Path(path)
    xmls = sorted((root / "Annotations").glob("*.xml"))
    if not xmls:
        raise DataError(f"{root / 'Annotations'}: no .xml files")
    if classes is None and classes_file is not None:
        classes = read_class_names(classes_file)
    if classes is None:
        labels = sorted({obj.findtext("name", "").strip() for xml in xmls for obj in _parse_xml(xml).iter("object")} - {""})
    else:
        labels = [str(classes[k]) for k in sorted(classes)] if isinstance(classes, dict) else [str(c) for c in classes]
    index = {name: i for i, name in enumerate(labels)}
    sets = root / "ImageSets" / "Main"
    items: dict[str, list[Any]] = {}
    for split in ("train", "val", "test"):
        listed = sets / f"{split}.txt"
        if listed.is_file():
            items[split] = [root / "Annotations" / f"{line.split()[0]}.xml" for line in listed.read_text().splitlines() if line.strip()]
    if "train" not in items:
        items = {"train": xmls}

    def make(split: str, files: list[Path]) -> DetSplit:
        return DetSplit(len(files), lambda i: _voc_example(root, files[i], index, skip_difficult), lambda i: str(files[i]))

    return with_validation(labels, items, make, val_fraction, seed)


def _parse_xml(file: Path) -> ET.Element:
    try:
        return ET.parse(file).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{file}: not readable VOC XML ({err})") from err


def _voc_example(root: Path, xml: Path, index: dict[str, int], skip_difficult: bool) -> DetExample:
    tree = _parse_xml(xml)
    image = open_rgb(root / "JPEGImages" / tree.findtext("filename", f"{xml.stem}.jpg").strip())
    boxes, labels, rows = [], [], []
    for k, obj in enumerate(tree.iter("object")):
        if skip_difficult and obj.findtext("difficult", "0").strip() == "1":
            continue
        name, box = obj.findtext("name", "").strip(), obj.find("bndbox")
        try:
            coords = [float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError) as err:
            raise DataError(f"{xml}: object {k} ({name}): missing or bad bndbox") from err
        boxes.append(coords)
        labels.append(index.get(name, -1))
        rows.append(f"object {k} ({name})")
    boxes_np = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    check_example(boxes_np, labels, len(index), str(xml), rows)
    return DetExample(image, boxes_np, labels)


# ---- Hugging Face datasets ----------------------------------------------------------------------------
def hf_source(name: str, subset: str | None, splits: dict[str, str | None], image_column: str, objects_column: str,
              bbox_format: BoxFormat, val_fraction: float, seed: int) -> DetSource:
    """A hub dataset (or ``save_to_disk`` dir) with an ``objects`` column holding ``bbox`` and
    ``category`` lists (CPPE-5, COCO-style ``xywh`` pixels by default)."""
    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    features = tables["train"].features
    if objects_column not in features or image_column not in features:
        raise DataError(f"{name}: needs columns '{image_column}' and '{objects_column}' (columns: {list(features)})")
    objects = features[objects_column]
    inner = getattr(objects, "feature", objects)
    category = inner.get("category") if isinstance(inner, dict) else None
    category = getattr(category, "feature", category)
    if not hasattr(category, "names"):
        raise DataError(f"{name}: '{objects_column}.category' is not a ClassLabel, class names unknown")
    labels = list(category.names)

    def make(split: str, table: Any) -> DetSplit:
        def load(i: int) -> DetExample:
            row = table[i]
            image = row[image_column]
            image = image if isinstance(image, Image.Image) else open_rgb(image["path"])
            objs = row[objects_column]
            if isinstance(objs, list):  # a list of dicts rather than a dict of lists
                objs = {"bbox": [o["bbox"] for o in objs], "category": [o["category"] for o in objs]}
            boxes = to_xyxy(np.asarray(objs["bbox"], dtype=np.float32), bbox_format)
            cats = [int(c) for c in objs["category"]]
            check_example(boxes, cats, len(labels), f"{name}[{split}] row {i}")
            return DetExample(image.convert("RGB"), boxes, cats)

        return DetSplit(len(table), load, lambda i: f"{name}[{split}] row {i}")

    return DetSource(labels, {split: make(split, table) for split, table in tables.items()})
