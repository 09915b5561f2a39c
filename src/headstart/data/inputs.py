"""Expand predict.py's ``inputs=`` (a file, a folder or a glob) into a sorted list of files."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from headstart.data.errors import DataError


def expand_inputs(inputs: str | Sequence[str], extensions: Sequence[str]) -> list[str]:
    """Files named by ``inputs``; a folder is searched recursively for ``extensions``."""
    patterns = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in extensions)
        elif path.is_file():
            files.append(str(path))
        else:
            matched = sorted(glob.glob(pattern, recursive=True))
            if not matched:
                raise DataError(f"{pattern}: no such file, folder or glob match")
            files += matched
    if not files:
        raise DataError(f"{inputs}: no input files with extensions {', '.join(extensions)}")
    return files
