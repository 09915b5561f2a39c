"""Learning tests: the tiny models really learn synthetic shapes (runs exactly the experiments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_cfg
from headstart.train import train


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vit", "convnext"])
def test_tiny_model_learns_synthetic_shapes(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, f"experiment=synthetic/image_classification_{model}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.90, metrics
    assert metrics["test/acc"] >= 0.85, metrics
