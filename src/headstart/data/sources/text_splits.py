"""Which files hold which split, and held-out validation, for text datamodules (LM and seq2seq).

``data.path`` may be one file (all data; validation held out by ``val_fraction``), or a folder
whose files are named by split (``train*``, ``val*`` / ``valid*`` / ``dev*``, ``test*``), or a
folder of files all used as training data. ``data.train_path`` / ``val_path`` / ``test_path``
name the files explicitly and win over ``data.path``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence, TypeVar

from headstart.data.errors import DataError

T = TypeVar("T")
SPLIT_PREFIXES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}


def split_files(
    path: str | None,
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    suffixes: Sequence[str],
) -> dict[str, list[Path]]:
    """Our split name -> files; a missing "val" means: hold it out of train."""
    explicit = {"train": train_path, "val": val_path, "test": test_path}
    if any(explicit.values()):
        if not train_path and not path:
            raise DataError("data.val_path/test_path given without data.train_path (or data.path)")
        out = {split: [_existing(p)] for split, p in explicit.items() if p}
        if "train" not in out:
            out["train"] = _files_of(Path(path), suffixes) if path else []  # type: ignore[arg-type]
        return out
    if not path:
        raise DataError("this data.source needs data.path (a file or folder) or data.train_path")
    root = _existing(path)
    if root.is_file():
        return {"train": [root]}
    files = _files_of(root, suffixes)
    by_split: dict[str, list[Path]] = {}
    for file in files:
        stem = file.name.lower()
        for split, prefixes in SPLIT_PREFIXES.items():
            if stem.startswith(prefixes):
                by_split.setdefault(split, []).append(file)
                break
    if "train" in by_split:
        return by_split
    return {"train": files}


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file or folder not found")
    return p


def _files_of(root: Path, suffixes: Sequence[str]) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{root}: no {', '.join(suffixes)} files in this folder")
    return files


def hold_out(items: list[T], fraction: float, seed: int, contiguous: bool) -> tuple[list[T], list[T]]:
    """(train, val): the last ``fraction`` of ``items`` (``contiguous``, for running text) or a
    seeded random ``fraction`` of them."""
    if not 0 < fraction < 1:
        raise DataError(f"data.val_fraction={fraction} must be in (0, 1) when the data has no validation split")
    n_val = max(1, int(round(len(items) * fraction)))
    if len(items) < 2:
        raise DataError(f"only {len(items)} example(s): cannot hold out a validation split")
    if contiguous:
        return items[:-n_val], items[-n_val:]
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in val], [x for i, x in enumerate(items) if i in val]


def field(record: Any, column: str) -> Any:
    """``record[column]``; a dotted column reads nested fields (``translation.en``)."""
    value = record
    for part in column.split("."):
        value = value[part]
    return value
