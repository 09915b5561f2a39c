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


def looks_like_torch_file(path: str | Path) -> bool:
    """torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle
    (protocol 2+ starts with 0x80); anything else (a README, a YAML, a PNG) is not a checkpoint."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def not_a_file_message(path: str | Path) -> str:
    """Why ``path`` cannot be a checkpoint file: a directory (naming the checkpoints in it) or missing."""
    target = Path(path)
    if target.is_dir():
        found = sorted(target.glob("*.ckpt")) or sorted(target.glob("checkpoints/*.ckpt"))
        shown = ", ".join(str(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        return f"{path} is a directory, not a checkpoint file; " + (
            f"pass one of the checkpoints in it: {shown}" if found else "it holds no *.ckpt (nor checkpoints/*.ckpt)")
    return f"{path}: checkpoint not found"


def safe_load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU; a refused or unreadable file is one line.

    ``mmap=True`` maps the tensors instead of reading them (a cheap check of a large file).
    """
    if Path(path).is_dir():
        raise ConfigError(not_a_file_message(path))
    if not Path(path).is_file():
        raise FileNotFoundError(not_a_file_message(path))
    if not looks_like_torch_file(path):
        raise UnsafeCheckpointError(f"{path}: not a checkpoint (a file torch.save writes is a zip archive or a pickle)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - torch raises many types on a foreign or corrupt file
        raise UnsafeCheckpointError(f"{path}: {_reason(err)}") from err
    if not isinstance(checkpoint, dict):
        raise UnsafeCheckpointError(f"{path}: not a checkpoint (holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


# ckpt_path values Lightning resolves itself (``last`` is headstart's, see run/resume.py).
LIGHTNING_CKPT_KEYWORDS = ("best", "hpc", "registry")


def check_resume_checkpoint(path: str | None) -> None:
    """``ckpt_path`` must name a checkpoint file: a directory or a missing file is one line naming
    it. Lightning's keywords (``best``, ``hpc``) pass. The file itself is read safely once, by
    ``run/resume.py:resumed_meta`` (its refusal of code or of a non-checkpoint is one line too)."""
    if not path or str(path) in LIGHTNING_CKPT_KEYWORDS or str(path).startswith("registry"):
        return
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path={not_a_file_message(path)}")
