"""Where each split comes from, the same way for every datamodule.

* ``pick_source(source, readers, task)``: each datamodule keeps a table ``source name -> reader``
  (a zero-argument callable); an unknown ``data.source`` is one :class:`DataError` naming the
  choices, for every task.
* ``require_hf_name(name)``: ``data.source=hf`` without ``data.hf_name`` (or ``data.path``) is one
  :class:`DataError`, for every task.
* ``hold_out(items, fraction, seed)``: the validation split held out of train when the data has
  none: a seeded random ``fraction`` (at least one item), or the last ``fraction`` for running
  text (``contiguous``). One RNG (``random.Random(seed)``) for every task.
* The split paths. Every datamodule reads ``data.path`` / ``train_path`` / ``val_path`` /
  ``test_path`` with one rule: an explicit ``*_path`` wins over what ``data.path`` implies, and
  ``data.path`` fills only the splits not named. What ``data.path`` implies depends on the
  layout the source reads:

  - :func:`split_file` (one file per split; text classification, NER, QA): a file is the
    training data; a folder holds ``train.*`` / ``val.*`` | ``validation.*`` | ``dev.*`` /
    ``test.*``;
  - :func:`split_files` (several files per split; language modelling, seq2seq, pretraining):
    a file is the training data; a folder's files are split by name prefix (``train*``,
    ``val*`` | ``valid*`` | ``dev*``, ``test*``), or all of them are training data;
  - :func:`split_folders` (one folder per split; image, audio, depth and mask folders): a
    folder with ``train/`` [``val/`` | ``validation/``] [``test/``], else the folder is the
    training data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from headstart.data.errors import DataError

T = TypeVar("T")
SPLITS = ("train", "val", "test")
VAL_NAMES = ("val", "validation", "dev")
HF_NAME_MISSING = "data.source=hf needs data.hf_name (a hub name or a local dataset directory)"


def pick_source(source: str, readers: Mapping[str, Callable[[], T]], task: str) -> T:
    """Run the reader ``readers[source]``; an unknown source is a DataError naming the choices."""
    reader = readers.get(source)
    if reader is None:
        raise DataError(f"data.source={source} is not one of {', '.join(readers)} for {task}")
    return reader()


def require_hf_name(name: str | None) -> str:
    """The dataset name for ``data.source=hf``; a DataError when none was given."""
    if not name:
        raise DataError(HF_NAME_MISSING)
    return str(name)


def hold_out(items: list[T], fraction: float, seed: int, contiguous: bool = False) -> tuple[list[T], list[T]]:
    """(train, val): a seeded random ``fraction`` of ``items`` held out (order kept on both
    sides), or the last ``fraction`` when ``contiguous`` (running text)."""
    if not 0 < fraction < 1:
        raise DataError(f"data.val_fraction={fraction} must be in (0, 1) when the data has no validation split")
    if len(items) < 2:
        raise DataError(f"only {len(items)} example(s): cannot hold out a validation split (data.val_fraction)")
    n_val = max(1, int(round(len(items) * fraction)))
    if contiguous:
        return items[:-n_val], items[-n_val:]
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in val], [x for i, x in enumerate(items) if i in val]


def explicit_paths(train_path: str | None, val_path: str | None, test_path: str | None) -> dict[str, str]:
    """The ``*_path`` values given, by split."""
    return {split: str(p) for split, p in zip(SPLITS, (train_path, val_path, test_path)) if p}


def existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file or folder not found")
    return p


def split_file(
    path: str | None, train_path: str | None, val_path: str | None, test_path: str | None, suffixes: Sequence[str],
) -> dict[str, Path]:
    """Split name -> file (one file per split; see the module doc)."""
    found: dict[str, Path] = {}
    if path:
        root = existing(path)
        if root.is_file():
            found["train"] = root
        else:
            for split, stems in (("train", ("train",)), ("val", VAL_NAMES), ("test", ("test",))):
                for file in sorted(root.iterdir()):
                    if file.stem in stems and file.suffix.lower() in suffixes:
                        found.setdefault(split, file)
            if "train" not in found and not train_path:
                raise DataError(f"{root}: no train file (train{'|'.join(suffixes)})")
    elif not train_path:
        raise DataError("data.path (or data.train_path) is needed for a file source")
    found.update({split: existing(p) for split, p in explicit_paths(train_path, val_path, test_path).items()})
    return found


def split_files(
    path: str | None, train_path: str | None, val_path: str | None, test_path: str | None, suffixes: Sequence[str],
) -> dict[str, list[Path]]:
    """Split name -> files (several files per split; see the module doc). A missing "val" means:
    hold it out of train."""
    explicit = explicit_paths(train_path, val_path, test_path)
    found: dict[str, list[Path]] = {}
    if path:
        root = existing(path)
        if root.is_file():
            found["train"] = [root]
        else:
            files = _files_of(root, suffixes)
            prefixes = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}
            for file in files:
                name = file.name.lower()
                split = next((s for s, p in prefixes.items() if name.startswith(p)), None)
                if split:
                    found.setdefault(split, []).append(file)
            if "train" not in found:
                found = {"train": files}
    elif not train_path:
        if explicit:
            raise DataError("data.val_path/test_path given without data.train_path (or data.path)")
        raise DataError("this data.source needs data.path (a file or folder) or data.train_path")
    found.update({split: [existing(p)] for split, p in explicit.items()})
    return found


def split_folders(path: str | None, train_path: str | None, val_path: str | None, test_path: str | None) -> dict[str, str | None]:
    """Split name -> folder (one folder per split; see the module doc); None for a split not there."""
    paths: dict[str, str | None] = {"train": train_path, "val": val_path, "test": test_path}
    if path is not None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: data folder not found")
        if (root / "train").is_dir():
            for split, sub in (("train", "train"), ("val", "val"), ("val", "validation"), ("test", "test")):
                if paths[split] is None and (root / sub).is_dir():
                    paths[split] = str(root / sub)
        elif paths["train"] is None:
            paths["train"] = str(root)
    if paths["train"] is None:
        raise DataError("this data.source needs data.path or data.train_path (a folder)")
    return paths


def _files_of(root: Path, suffixes: Sequence[str]) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{root}: no {', '.join(suffixes)} files in this folder")
    return files
