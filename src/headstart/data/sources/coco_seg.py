"""COCO segmentation sources: panoptic (JSON + segment-id PNGs) and instances (polygons / RLE in JSON).

Split files: ``train_path`` / ``val_path`` / ``test_path`` are annotation JSONs (relative to
``path`` or absolute); without ``val_path`` a ``val_fraction`` of train is held out. Images are
in ``image_dir`` (``{split}`` is replaced by train/val/test), panoptic PNGs in ``mask_dir``
(default: the JSON's name without ``.json`` when that folder exists, as in COCO, else
``masks/`` beside the JSON). RLE and polygons decode with faster_coco_eval's mask API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.errors import DataError
from headstart.data.sources.images import open_rgb
from headstart.data.sources.segmentation import SegExample, SegSource, SegSplit, paint_instances
from headstart.data.splits import hold_out

DEFAULT_ANNOTATIONS = {
    "coco_panoptic": ("panoptic/annotations.json", "annotations/panoptic_train2017.json"),
    "coco": ("annotations.json", "annotations/instances_train2017.json"),
}


def _resolve(root: Path | None, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() or root is None else root / path


def _annotation_files(kind: str, path: str | None, split_paths: dict[str, str | None]) -> dict[str, Path]:
    root = Path(path) if path is not None else None
    files = {split: _resolve(root, value) for split, value in split_paths.items() if value is not None}
    if "train" not in files and root is not None:
        found = next((root / c for c in DEFAULT_ANNOTATIONS[kind] if (root / c).is_file()), None)
        if found is not None:
            files["train"] = found
    if "train" not in files:
        raise DataError(f"data.source={kind} needs data.train_path (annotation JSON) or data.path holding one of "
                        f"{', '.join(DEFAULT_ANNOTATIONS[kind])}")
    for file in files.values():
        if not file.is_file():
            raise DataError(f"{file}: annotation file not found")
    return files


def _load_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: not valid JSON ({err})") from err
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"{file}: no '{key}' list (not a COCO annotation file)")
    return data


def _image_dir(path: str | None, image_dir: str, split: str, file: Path) -> Path:
    root = Path(path) if path is not None else file.parent.parent
    return _resolve(root, image_dir.format(split=split))


def _categories(data: dict[str, Any]) -> tuple[list[str], list[int], dict[int, int]]:
    """(names, thing class ids, category id -> class id), categories sorted by id."""
    cats = sorted(data["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    things = [i for i, c in enumerate(cats) if c.get("isthing", 1)]
    return [c["name"] for c in cats], things, index


def coco_source(
    kind: str, path: str | None, split_paths: dict[str, str | None], image_dir: str, mask_dir: str | None,
    val_fraction: float, seed: int,
) -> SegSource:
    """kind: coco_panoptic or coco (instances). Classes come from the train JSON's categories."""
    files = _annotation_files(kind, path, split_paths)
    tables = {split: _load_json(file) for split, file in files.items()}
    labels, things, cat_index = _categories(tables["train"])
    entries: dict[str, list[tuple[Path, dict, Any]]] = {}
    for split, data in tables.items():
        images = _image_dir(path, image_dir, split, files[split])
        masks = None
        if kind == "coco_panoptic":
            default = files[split].with_suffix("") if files[split].with_suffix("").is_dir() else files[split].parent / "masks"
            masks = _resolve(Path(path) if path else None, mask_dir) if mask_dir else default
        by_image: dict[Any, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        if kind == "coco_panoptic":
            entries[split] = [(images / img["file_name"], img, (masks, by_image.get(img["id"], [None])[0])) for img in data["images"]
                              if img["id"] in by_image]
        else:
            entries[split] = [(images / img["file_name"], img, by_image.get(img["id"], [])) for img in data["images"]]
        if not entries[split]:
            raise DataError(f"{files[split]}: no annotated images")
    if "val" not in entries:
        entries["train"], entries["val"] = hold_out(entries["train"], val_fraction, seed)
    loader = _panoptic_example if kind == "coco_panoptic" else _instances_example

    def make(split: str, items: list) -> SegSplit:
        json_file = str(files.get(split, files["train"]))  # a held-out val split comes from the train JSON
        return SegSplit(len(items), lambda i: loader(*items[i], cat_index, json_file), lambda i: str(items[i][0]))

    return SegSource(labels, things, {split: make(split, items) for split, items in entries.items()})


def _panoptic_example(
    image_path: Path, image_info: dict, extra: tuple[Path, dict], cat_index: dict[int, int], json_file: str
) -> SegExample:
    masks, ann = extra
    png = masks / ann["file_name"]
    image = open_rgb(image_path)
    with Image.open(png) as pan:
        pan.load()
        if pan.mode != "RGB":
            raise DataError(f"{png}: panoptic PNG must be RGB (id = R + 256 G + 256^2 B), got mode {pan.mode}")
        if pan.size != image.size:
            raise DataError(f"{png}: panoptic PNG is {pan.size[0]}x{pan.size[1]} but its image is {image.size[0]}x{image.size[1]}")
        rgb = np.asarray(pan, dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    segments = ann["segments_info"]
    seg_ids = np.array([0] + [s["id"] for s in segments], dtype=np.int64)
    order = np.argsort(seg_ids)
    pos = np.searchsorted(seg_ids[order], ids).clip(0, len(seg_ids) - 1)
    known = seg_ids[order][pos] == ids
    if not known.all():
        unknown = sorted(set(np.unique(ids[~known]).tolist()))[:5]
        raise DataError(f"{png}: segment ids {unknown} are not in segments_info of {json_file}")
    id_map = order[pos].astype(np.int32)  # index in [void, *segments]: 0 = void
    classes = []
    for s in segments:
        if s["category_id"] not in cat_index:
            raise DataError(f"{json_file}: image {ann['file_name']} segment {s['id']} has unknown category {s['category_id']}")
        classes.append(cat_index[s["category_id"]])
    return SegExample(image, id_map, classes, [bool(s.get("iscrowd", 0)) for s in segments])


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO polygons, uncompressed RLE or compressed RLE -> [H, W] bool."""
    from faster_coco_eval.core import mask as mask_api

    if isinstance(segmentation, list):
        rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_api.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_api.decode(rle).astype(bool)


def _instances_example(image_path: Path, image_info: dict, anns: list[dict], cat_index: dict[int, int], json_file: str) -> SegExample:
    image = open_rgb(image_path)
    height, width = image.height, image.width
    if (image_info.get("height", height), image_info.get("width", width)) != (height, width):
        raise DataError(f"{image_path}: image is {width}x{height} but {json_file} says {image_info['width']}x{image_info['height']}")
    shapes = []
    for ann in anns:
        if ann["category_id"] not in cat_index:
            raise DataError(f"{json_file}: annotation {ann.get('id')} has unknown category {ann['category_id']}")
        try:
            mask = decode_segmentation(ann["segmentation"], height, width)
        except Exception as err:  # malformed polygons / RLE
            raise DataError(f"{json_file}: annotation {ann.get('id')}: bad segmentation ({err})") from err
        shapes.append((ann, mask))

    id_map = paint_instances(image.size, [mask for _, mask in shapes])
    return SegExample(image, id_map, [cat_index[a["category_id"]] for a, _ in shapes], [bool(a.get("iscrowd", 0)) for a, _ in shapes])
