"""Multirun summary, long sweeps (W&B run per job, DDP jobs), Optuna search resumed after a kill, submitit_local."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from test_ddp import run_train
from wandb.proto import wandb_internal_pb2

from conftest import ROOT
from headstart.run.optuna_storage import ResumableStorage

QUIET = ["~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
BASE = ["model.preset=tiny", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "data.num_workers=0", *QUIET]
TINY = [*BASE, "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}", "logger=csv"]
# Each job of the long sweep as small as it gets: 2 steps of batch 4, one validation batch, no test.
SMALL = [*BASE, "data.batch_size=4", "data.synthetic_sizes={train: 8, val: 4, test: 4}", "test=false"]


def run_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}


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
def test_ten_job_sweep_gives_each_job_its_run_dir_metrics_and_closed_wandb_run(tmp_path: Path) -> None:
    # Job 4 fails inside fit (AdamW refuses lr=-1), after its W&B run started: the jobs after it
    # still get their own run, and the summary has every job.
    lrs = "1e-4,2e-4,3e-4,4e-4,-1,5e-4,6e-4,7e-4,8e-4,9e-4"
    start = time.perf_counter()
    proc = run_train(tmp_path, "-m", *SMALL, "logger=[csv,wandb]", f"optim.lr={lrs}", f"hydra.sweep.dir={tmp_path}/sweep")
    seconds = time.perf_counter() - start
    rows = summary_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["FAILED"] + ["ok"] * 5, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "optim.lr=-1: must be a number > 0" in rows[4]["error"] and rows[4]["overrides"] == "optim.lr=-1"
    assert all(float(r["val/acc"]) >= 0.0 for i, r in enumerate(rows) if i != 4)
    assert (tmp_path / "sweep" / "summary.md").read_text().count("\n") == 12
    assert sorted(int(p.parent.name) for p in (tmp_path / "sweep").rglob("metrics.json")) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # job 4 fails its range check before anything is built: no W&B run was opened for it
    assert not list((tmp_path / "sweep" / "4").glob("wandb/offline-run-*"))
    for job in (0, 1, 2, 3, 5, 6, 7, 8, 9):
        exit_code, summary = wandb_run_of(tmp_path / "sweep" / str(job))
        assert exit_code == 0, job  # the job's own run: it logged the job's final val/acc
        assert summary["val/acc"] == float(rows[job]["val/acc"]), (job, summary)
    assert not list(tmp_path.glob("logs/**/runs/*"))
    print(f"10-job sweep: {seconds:.1f} s")


@pytest.mark.slow
def test_ddp_sweep_of_four_jobs_survives_a_failed_job(tmp_path: Path) -> None:
    # Job 1 fails on both ranks (lr=-1); Lightning's launcher used to SIGKILL the whole sweep when
    # that job's child exited with an error, orphaning the next job's child (waiting forever).
    start = time.perf_counter()
    proc = run_train(
        tmp_path, "-m", *BASE, "data.batch_size=8", "data.synthetic_sizes={train: 16, val: 8, test: 8}", "test=false",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=[csv,wandb]",
        "optim.lr=1e-3,-1,3e-3,4e-3", f"hydra.sweep.dir={tmp_path}/sweep", timeout=400,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr[-3000:]  # Hydra's exit status after a failed job, not a kill
    rows = summary_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok", "FAILED", "ok", "ok"], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "optim.lr=-1: must be a number > 0" in rows[1]["error"] and all(rows[j]["val/acc"] != "" for j in (0, 2, 3))
    assert sorted(p.parent.name for p in (tmp_path / "sweep").rglob("metrics.json")) == ["0", "2", "3"]
    assert not list((tmp_path / "sweep" / "1").glob("wandb/offline-run-*"))  # refused before anything is built
    for job in (0, 2, 3):
        exit_code, summary = wandb_run_of(tmp_path / "sweep" / str(job))
        assert exit_code == 0, job
        assert summary["val/acc"] == float(rows[job]["val/acc"]), (job, summary)
    assert not list(tmp_path.glob("logs/**/runs/*"))  # no stray single-run directories
    assert not processes_mentioning(str(tmp_path)), "a DDP process outlived the sweep"
    print(f"4-job DDP sweep: {seconds:.1f} s")


@pytest.mark.slow
def test_optuna_search_resumes_from_sqlite_and_fails_a_killed_trial(tmp_path: Path) -> None:
    db = tmp_path / "logs" / "optuna.db"
    args = ["-m", "hparams_search=optuna", *TINY, f"paths.log_dir={tmp_path}/logs",
            "hydra.sweeper.storage.heartbeat_interval=1"]
    first = run_train(tmp_path, *args, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}/s1")
    assert first.returncode == 0, first.stderr[-3000:]
    # Each trial's value is the job's val/acc, and the best the search reports is the stored best.
    values = dict(query(db, "select t.number, v.value from trials t join trial_values v using (trial_id)"))
    for number, value in values.items():
        assert value == json.loads((tmp_path / "s1" / str(number) / "metrics.json").read_text())["val/acc"]
    reported = yaml.safe_load((tmp_path / "s1" / "optimization_results.yaml").read_text())
    assert reported["best_value"] == max(values.values())
    assert reported["best_params"] in [trial_params(db, n) for n, v in values.items() if v == max(values.values())]

    # Killed while trial 3 runs; re-running the search marks that trial FAIL and goes on.
    killed = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}/s2"],
        cwd=tmp_path, env=run_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: query(db, "select number from trials where state = 'RUNNING'") == [(3,)], killed)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert query(db, "select number, state from trials where number = 3") == [(3, "RUNNING")]
    time.sleep(3)  # the dead search's last heartbeat is now older than the grace period (2 s)
    resumed = run_train(tmp_path, *args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}/s3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = query(db, "select number, state from trials order by number")
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "FAIL"), (4, "COMPLETE"), (5, "COMPLETE")]
    assert "optuna: trial 3 of 'image_classification-vit' was left RUNNING by a search that stopped" in resumed.stdout
    first_run = {tuple(sorted(trial_params(db, n).items())) for n in (0, 1, 2)}
    assert not first_run & {tuple(sorted(trial_params(db, n).items())) for n in (4, 5)}, "the resumed search repeated trials"


def test_optuna_storage_fails_only_the_trials_whose_search_died(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    live = optuna.create_study(study_name="s", storage=ResumableStorage(url, heartbeat_interval=1))
    running = live.ask()  # its search is alive: the storage beats for it every second
    optuna.load_study(study_name="s", storage=url).ask()  # a trial without a heartbeat (plain storage)
    time.sleep(3)  # past the grace period (2 s)
    optuna.load_study(study_name="s", storage=ResumableStorage(url, heartbeat_interval=1))  # another search resumes
    states = [t.state for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL]
    live.tell(running, 1.0)  # the live search finishes its trial; its beats stop


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs(tmp_path: Path) -> None:
    proc = run_train(
        tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY,
        "optim.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").rglob("metrics.json")) == ["0", "1"]


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def query(db: Path, sql: str) -> list[tuple]:
    if not db.is_file():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def trial_params(db: Path, number: int) -> dict[str, float]:
    """A trial's parameters as the sweeper reports them (internal value = value for floats)."""
    rows = query(db, f"select p.param_name, p.param_value from trial_params p join trials t using (trial_id) where t.number = {number}")
    return dict(rows)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the search ended before the awaited state"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def wandb_run_of(job_dir: Path) -> tuple[int, dict[str, Any]]:
    """The one offline W&B run of a job: its exit code (the run is closed) and its summary keys."""
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    exits = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert len(exits) == 1, f"{run_file}: the run was not finished"
    updates = [item for r in records if r.WhichOneof("record_type") == "summary" for item in r.summary.update]
    summary = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}
    return exits[0].exit_code, summary


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``.wandb`` file (a LevelDB-style log of 32 KiB blocks after a
    7-byte ``:W&B`` header; each chunk: crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4)."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
