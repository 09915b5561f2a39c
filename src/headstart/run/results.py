"""metrics.json: every final val/* and test/* metric plus run facts, written by rank zero."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

METRIC_PREFIXES = ("val/", "test/")


def scalar_metrics(metrics: Mapping[str, Any], prefixes: tuple[str, ...] = METRIC_PREFIXES) -> dict[str, float]:
    """Plain floats for every metric under ``prefixes`` (tensors converted once, at the end)."""
    out = {}
    for name, value in metrics.items():
        if not name.startswith(prefixes):
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        out[name] = float(value)
    return dict(sorted(out.items()))


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def write_metrics(path: str | Path, results: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: json_safe(v) for k, v in results.items()}, indent=2) + "\n")
    return path
