"""Checkpoints are data, not code: every checkpoint is read with ``weights_only=True``.

torch refuses a pickle that names anything but tensors and plain containers with a long
multi-line text; here that refusal becomes one line naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from headstart.run.errors import ConfigError


class UnsafeCheckpointError(ConfigError):
    """A checkpoint whose pickle holds code (or is not a checkpoint at all); nothing of it was run."""


_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)|Unsupported operand \d+")


def _reason(err: BaseException) -> str:
    text = str(err)
    if "Weights only load failed" not in text:
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        return f"not a readable checkpoint ({first[:200]})"
    found = _GLOBAL.search(text)
    what = found.group(1) or found.group(0) if found else "a pickle instruction torch does not allow"
    return f"refused to load: the checkpoint holds code ({what}); only tensors and plain data are loaded"


def safe_load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU; a refused or unreadable file is one line.

    ``mmap=True`` maps the tensors instead of reading them (a cheap check of a large file).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - torch raises many types on a foreign or corrupt file
        raise UnsafeCheckpointError(f"{path}: {_reason(err)}") from err
    if not isinstance(checkpoint, dict):
        raise UnsafeCheckpointError(f"{path}: not a checkpoint (holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


def check_resume_checkpoint(path: str | None) -> None:
    """Read ``ckpt_path`` safely before Lightning does (its refusal is torch's multi-line text);
    memory-mapped, so a large checkpoint costs little. Lightning's keywords (``last``...) pass."""
    if path and Path(path).is_file():
        safe_load(path, mmap=True)
