"""Multirun summary, Optuna search with resumable storage, DDP inside a multirun, submitit_local."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from test_ddp import run_train

TINY = [
    "model.preset=tiny", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "data.num_workers=0",
    "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}", "logger=csv",
    "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
]


def summary_rows(sweep_root: Path) -> list[dict[str, str]]:
    (summary,) = list(sweep_root.rglob("summary.csv"))
    with summary.open() as handle:
        return list(csv.DictReader(handle))


def test_multirun_summary_lists_every_job_and_failures(tmp_path: Path) -> None:
    proc = run_train(tmp_path, "-m", *TINY, "data.source=synthetic,folder", f"hydra.sweep.dir={tmp_path}/sweep")
    assert "job 0 ok" in proc.stdout and "job 1 FAILED" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = summary_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok", "FAILED"]
    assert rows[0]["overrides"] == "data.source=synthetic" and float(rows[0]["val/acc"]) >= 0.0
    assert "needs data.path" in rows[1]["error"]
    assert (tmp_path / "sweep" / "summary.md").read_text().count("\n") == 4
    assert Path(rows[0]["run_dir"], "metrics.json").is_file()


@pytest.mark.slow
def test_optuna_search_runs_and_resumes_from_sqlite(tmp_path: Path) -> None:
    args = ["-m", "hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=3", f"paths.log_dir={tmp_path}/logs"]
    first = run_train(tmp_path, *args, f"hydra.sweep.dir={tmp_path}/s1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Best value" in first.stdout or "best" in first.stdout.lower()
    second = run_train(tmp_path, *args, f"hydra.sweep.dir={tmp_path}/s2")
    assert second.returncode == 0, second.stderr[-3000:]
    with sqlite3.connect(tmp_path / "logs" / "optuna.db") as db:
        numbers = sorted(n for (n,) in db.execute("select number from trials where state = 'COMPLETE'"))
    assert numbers == list(range(6))
    with sqlite3.connect(tmp_path / "logs" / "optuna.db") as db:
        params = db.execute("select trial_id, param_name, param_value from trial_params").fetchall()
    by_trial: dict[int, tuple] = {}
    for trial, name, value in sorted(params):
        by_trial[trial] = (*by_trial.get(trial, ()), (name, value))
    first_run, resumed = list(by_trial.values())[:3], list(by_trial.values())[3:]
    assert not set(first_run) & set(resumed), "the resumed search repeated the first run's trials"


@pytest.mark.slow
def test_ddp_inside_a_multirun_gives_each_job_one_run_dir(tmp_path: Path) -> None:
    proc = run_train(
        tmp_path, "-m", *TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "optim.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = summary_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    metrics = sorted(p.parent.name for p in (tmp_path / "sweep").rglob("metrics.json"))
    assert metrics == ["0", "1"]
    assert not list(tmp_path.glob("logs/**/runs/*"))  # no stray single-run directories


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs(tmp_path: Path) -> None:
    proc = run_train(
        tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY,
        "optim.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").rglob("metrics.json")) == ["0", "1"]
