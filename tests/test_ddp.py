"""Real DDP: 2 CPU processes with gloo, launched the way a user launches them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def run_train(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides, f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_ddp_two_cpu_processes_write_one_metrics_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        tmp_path,
        "model.preset=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "data.num_workers=0", "data.batch_size=8",
        "data.synthetic_sizes={train: 32, val: 16, test: 16}", "logger=default",
        "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = list(tmp_path.rglob("metrics.json"))
    assert metrics == [run_dir / "metrics.json"]
    results = json.loads(metrics[0].read_text())
    # 32 examples over 2 ranks x batch 8 = 2 steps; throughput counts both ranks' examples.
    assert results["global_step"] == 2 and "val/acc" in results and "test/acc" in results
    assert len(list(tmp_path.rglob("offline-run-*"))) == 1


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_train(tmp_path, "model.preset=tiny", "data.source=folder", f"data.path={tmp_path}/missing",
                     "logger=csv", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/missing: data folder not found"
    assert "Traceback" not in proc.stderr
