"""Where RGB + depth pairs come from: synthetic scenes, a folder of pairs, NYU-style lists, `datasets`.

Each source yields ``DepthSplit`` objects: ``len``, ``load(i) -> (image uint8 [H, W, 3],
depth float32 [h, w] metres, 0 = invalid)`` and ``where(i)`` (the depth file, or dataset and row,
named in errors and skip reports; an image that does not decode is named itself). Depth may come at another size than its image; the
datamodule resizes it (nearest neighbour) or rejects it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headstart.data.errors import DataError, OnError, Skipped
from headstart.data.sources.images import IMAGE_EXTENSIONS
from headstart.data.sources.text import read_lines
from headstart.data.splits import hold_out, split_folders
from headstart.data.synthetic.depth_scenes import render_scene
from headstart.ops.depth_io import read_depth

DEPTH_EXTENSIONS = (".png", ".npy")
IMAGE_DIRS = ("image", "images", "rgb")
DEPTH_DIRS = ("depth", "depths")


@dataclass
class DepthSplit:
    size: int
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    where: Callable[[int], str]

    def __len__(self) -> int:
        return self.size


def open_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]; a file that does not decode is a DataError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from err


def load_depth(path: Path, scale: float, npy_scale: float = 1.0, png8_scale: float | None = None) -> np.ndarray:
    """read_depth with its file-named ValueError turned into a DataError."""
    try:
        return read_depth(path, scale, npy_scale, png8_scale)
    except ValueError as err:
        raise DataError(str(err)) from err


def pair_split(pairs: list[tuple[Path, Path]], scale: float, npy_scale: float = 1.0, png8_scale: float | None = None) -> DepthSplit:
    return DepthSplit(
        len(pairs),
        lambda i: (open_image(pairs[i][0]), load_depth(pairs[i][1], scale, npy_scale, png8_scale)),
        lambda i: str(pairs[i][1]),
    )


# ---- synthetic --------------------------------------------------------------------------------
def synthetic_splits(sizes: dict[str, int], seed: int, image_size: tuple[int, int], max_depth: float) -> dict[str, DepthSplit]:
    """Rendered rooms (see ``render_scene``); each split draws from its own seed stream."""
    height, width = image_size
    # Scenes stay below max_depth by design; keep them inside the valid range with a margin.
    scene_depth = 0.95 * max_depth
    splits = {}
    for offset, (name, n) in enumerate(sizes.items()):
        scenes = _SceneCache((seed * 1000 + offset) * 1_000_003, height, width, scene_depth)
        splits[name] = DepthSplit(n, scenes, lambda i, name=name: f"synthetic[{name}] row {i}")
    return splits


class _SceneCache:
    """Render scene ``base + i`` once per process (a 48x64 scene is ~25 kB; rendering ~5 ms)."""

    def __init__(self, base: int, height: int, width: int, max_depth: float) -> None:
        self.base, self.height, self.width, self.max_depth = base, height, width, max_depth
        self.scenes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self.scenes:
            self.scenes[i] = render_scene(self.base + i, self.height, self.width, self.max_depth)
        return self.scenes[i]


# ---- folder -----------------------------------------------------------------------------------
def _is_depth_name(path: Path) -> bool:
    stem = path.stem.lower()
    return path.suffix.lower() == ".npy" or stem.startswith("depth") or stem.endswith(("_depth", ".depth", "-depth"))


def _parallel_pairs(image_root: Path, depth_root: Path) -> list[tuple[Path, Path]]:
    """images/<rel>.<ext> + depth/<rel>.png|.npy."""
    pairs = []
    for image in sorted(p for p in image_root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        rel = image.relative_to(image_root).with_suffix("")
        found = [depth_root / rel.with_suffix(ext) for ext in DEPTH_EXTENSIONS if (depth_root / rel.with_suffix(ext)).is_file()]
        if not found:
            raise DataError(f"{image}: no depth map {depth_root / rel}.png or .npy")
        pairs.append((image, found[0]))
    return pairs


def _partner(image: Path, images_here: int) -> Path:
    """The depth file of ``image``: <stem>_depth.png|.npy beside it, or the one depth*.png|.npy of its folder."""
    for suffix in ("_depth", ".depth", "-depth"):
        for ext in DEPTH_EXTENSIONS:
            candidate = image.with_name(image.stem + suffix + ext)
            if candidate.is_file():
                return candidate
    if images_here == 1:
        depths = sorted(p for p in image.parent.iterdir() if p.suffix.lower() in DEPTH_EXTENSIONS and _is_depth_name(p))
        if len(depths) == 1:
            return depths[0]
        if len(depths) > 1:
            raise DataError(f"{image.parent}: several depth files ({', '.join(p.name for p in depths)}) for one image")
    raise DataError(
        f"{image}: no depth map found (expected {image.stem}_depth.png|.npy beside it, one depth*.png|.npy "
        f"in its folder, or images/ + depth/ folders)"
    )


def find_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, depth) pairs under ``root`` in one of three layouts:

    1. parallel folders ``root/{image,images,rgb}/<name>.<ext>`` + ``root/{depth,depths}/<name>.png|.npy``;
    2. one folder per pair, ``<dir>/<one image>`` + ``<dir>/depth*.png|.npy`` (or any ``.npy``);
    3. siblings ``<name>.<ext>`` + ``<name>_depth.png|.npy``.
    """
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    depth_dir = next((root / d for d in DEPTH_DIRS if (root / d).is_dir()), None)
    if image_dir is not None and depth_dir is not None:
        pairs = _parallel_pairs(image_dir, depth_dir)
    else:
        images = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not _is_depth_name(p)
        )
        per_folder: dict[Path, int] = {}
        for image in images:
            per_folder[image.parent] = per_folder.get(image.parent, 0) + 1
        pairs = [(image, _partner(image, per_folder[image.parent])) for image in images]
    if not pairs:
        raise DataError(f"{root}: no image + depth pairs found (images: {', '.join(IMAGE_EXTENSIONS)})")
    return pairs


def folder_splits(
    path: str | None,
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    val_fraction: float,
    seed: int,
    scale: float,
    npy_scale: float = 1.0,
    png8_scale: float | None = None,
) -> dict[str, DepthSplit]:
    """``path`` holding train/ val/ [test/] pair folders, or one pair folder split by ``val_fraction``,
    or explicit per-split folders (the same folder for train and val is allowed: overfitting)."""
    paths = split_folders(path, train_path, val_path, test_path)
    pairs = {"train": find_pairs(Path(paths["train"]))}
    if paths["val"] is None:
        pairs["train"], pairs["val"] = hold_out(pairs["train"], val_fraction, seed)
    else:
        pairs["val"] = find_pairs(Path(paths["val"]))
    if paths["test"] is not None:
        pairs["test"] = find_pairs(Path(paths["test"]))
    return {name: pair_split(items, scale, npy_scale, png8_scale) for name, items in pairs.items()}


# ---- NYU-style list files -----------------------------------------------------------------------
def _join(root: Path | None, name: str) -> Path:
    # BTS/GLPN lists write "/kitchen_0028a/rgb_00045.jpg": relative to the data root despite the slash.
    return root / name.lstrip("/") if root is not None else Path(name)


def read_pair_list(
    list_file: Path, image_root: Path | None, depth_root: Path | None, on_error: OnError
) -> list[tuple[Path, Path] | Skipped]:
    """Lines ``<image> <depth> [focal ...]``; rows whose depth is ``None`` (no ground truth) are left out."""
    items: list[tuple[Path, Path] | Skipped] = []
    for where, text in read_lines(list_file, on_error):
        if isinstance(text, Skipped):
            items.append(text)
            continue
        fields = text.split()
        if len(fields) < 2:
            message = f"expected '<image> <depth> [focal]', got {text.strip()!r}"
            if on_error == "skip":
                items.append(Skipped(where, message))
                continue
            raise DataError(f"{where}: {message}")
        if fields[1] == "None":
            continue
        items.append((_join(image_root, fields[0]), _join(depth_root, fields[1])))
    if not items:
        raise DataError(f"{list_file}: no '<image> <depth>' rows with ground truth")
    return items


def list_split(items: list[tuple[Path, Path] | Skipped], scale: float, npy_scale: float = 1.0,
               png8_scale: float | None = None) -> DepthSplit:
    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        item = items[i]
        if isinstance(item, Skipped):
            raise DataError(item.reason)
        return open_image(item[0]), load_depth(item[1], scale, npy_scale, png8_scale)

    return DepthSplit(len(items), load, lambda i: items[i].where if isinstance(items[i], Skipped) else str(items[i][1]))


def list_splits(
    path: str | None,
    depth_root: str | None,
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    val_fraction: float,
    seed: int,
    scale: float,
    on_error: OnError,
    npy_scale: float = 1.0,
    png8_scale: float | None = None,
) -> dict[str, DepthSplit]:
    """NYU/KITTI (BTS, GLPN) split lists; image paths relative to ``path``, depth to ``depth_root``
    (default ``path``). A relative list file is looked up under ``path`` when not found as given."""
    image_root = Path(path) if path is not None else None
    depth_dir = Path(depth_root) if depth_root is not None else image_root
    if train_path is None:
        raise DataError("data.source=nyu needs data.train_path (a '<image> <depth> [focal]' list file)")

    def locate(name: str) -> Path:
        file = Path(name)
        if not file.is_file() and image_root is not None and (image_root / name).is_file():
            return image_root / name
        return file

    items = {"train": read_pair_list(locate(train_path), image_root, depth_dir, on_error)}
    if val_path is None:
        items["train"], items["val"] = hold_out(items["train"], val_fraction, seed)
    else:
        items["val"] = read_pair_list(locate(val_path), image_root, depth_dir, on_error)
    if test_path is not None:
        items["test"] = read_pair_list(locate(test_path), image_root, depth_dir, on_error)
    return {name: list_split(rows, scale, npy_scale, png8_scale) for name, rows in items.items()}


# ---- Hugging Face datasets ----------------------------------------------------------------------
def hf_depth(value: Any, where: str, scale: float) -> np.ndarray:
    """A depth cell: a PIL image (mode F: metres; integer modes: units of ``scale``) or an array (metres)."""
    if isinstance(value, dict) and value.get("path"):
        return load_depth(Path(value["path"]), scale)
    if isinstance(value, Image.Image):
        array = np.asarray(value, dtype=np.float64)
        array = array if value.mode == "F" else array / scale
    else:
        array = np.asarray(value, dtype=np.float64)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise DataError(f"{where}: depth must be [H, W], got shape {array.shape}")
    depth = np.where(np.isfinite(array) & (array > 0), array, 0.0).astype(np.float32)
    if not (depth > 0).any():
        raise DataError(f"{where}: no valid depth (all pixels NaN, inf, zero or negative)")
    return depth


def hf_splits(
    name: str,
    subset: str | None,
    image_column: str,
    depth_column: str,
    splits: dict[str, str | None],
    val_fraction: float,
    seed: int,
    scale: float,
) -> dict[str, DepthSplit]:
    """A hub dataset name or a local ``save_to_disk`` directory with an image and a depth column."""
    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    columns = list(tables["train"].features)
    for column in (image_column, depth_column):
        if column not in columns:
            raise DataError(f"{name}: no column '{column}' (columns: {columns})")

    def make(split: str, table: Any) -> DepthSplit:
        def where(i: int) -> str:
            return f"{name}[{split}] row {i}"

        def load(i: int) -> tuple[np.ndarray, np.ndarray]:
            row = table[i]
            image = row[image_column]
            image = image if isinstance(image, Image.Image) else Image.open(image["path"])
            return np.array(image.convert("RGB")), hf_depth(row[depth_column], where(i), scale)

        return DepthSplit(len(table), load, where)

    return {split: make(split, table) for split, table in tables.items()}
