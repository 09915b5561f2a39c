"""Preemption: SIGTERM to a real training process writes last.ckpt and exits cleanly; the run
resumes from it (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning.pytorch import Callback, Trainer

from conftest import ROOT, make_cfg
from headstart.run.safe_load import safe_load
from headstart.train import train

ARGS = [
    "model.preset=tiny", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary", "logger=csv", "data.num_workers=0", "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.batch_size=8",
    "data.synthetic_sizes={train: 8000, val: 8, test: 8}", "callbacks.last_checkpoint.every_n_train_steps=2",
]


def start(tmp_path: Path, run_dir: Path, *extra: str, new_session: bool = False) -> subprocess.Popen:
    """train.py in a subprocess; ``new_session``: as the leader of its own process group (as a
    batch scheduler starts a job step), so that ``os.killpg(proc.pid, ...)`` reaches its workers."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *ARGS, *extra, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_exits_cleanly_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc = start(tmp_path, run, "trainer.max_steps=100000")
    wait_for(last, proc, timeout=240)  # step 2 done: training is under way
    before = safe_load(last)["global_step"]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    saved = safe_load(last)
    assert saved["global_step"] > before and elapsed < 30, (saved["global_step"], before, elapsed)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["preempted"] is True and metrics["global_step"] == saved["global_step"]

    resumed_dir = tmp_path / "resumed"
    target = saved["global_step"] + 2
    resumed = start(tmp_path, resumed_dir, f"trainer.max_steps={target}", f"ckpt_path={last}")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    after = json.loads((resumed_dir / "metrics.json").read_text())
    assert after["global_step"] == target and after["preempted"] is False


class SignalAtStep2(Callback):
    """Sends this process SIGUSR2 (submitit's requeue signal) after the second step."""

    def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGUSR2)


def test_a_requeue_handler_runs_only_after_the_checkpoint_is_written(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    seen: list[int | None] = []

    def requeue(signum: int, frame: object) -> None:  # stands in for submitit's: requeue, then exit
        seen.append(safe_load(last)["global_step"] if last.is_file() else None)

    before = signal.signal(signal.SIGUSR2, requeue)
    try:
        results = train(make_cfg(
            tmp_path, "model.preset=tiny", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "data.batch_size=8", "data.synthetic_sizes={train: 400, val: 8, test: 8}",
            "trainer.max_steps=50", "+callbacks.signal._target_=test_preemption.SignalAtStep2",
        ))
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert results["preempted"] is True and results["global_step"] == 3
    assert seen == [3]  # called once, with the step-3 checkpoint already on disk


class SigtermAfterTheCheck(Callback):
    """Sends this process SIGTERM at the end of step 2, after Preemption's own batch-end check
    ran (callbacks run in order): Lightning then ends fit with SIGTERMException at that batch."""

    def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_between_the_checkpoint_check_and_lightnings_exit_still_writes_metrics(tmp_path: Path) -> None:
    """The race CI hit: the signal lands after the callback looked, Lightning raises its exit;
    the checkpoint is written in on_exception and train() still writes metrics.json."""
    results = train(make_cfg(
        tmp_path, "model.preset=tiny", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.batch_size=8", "data.synthetic_sizes={train: 400, val: 8, test: 8}",
        "trainer.max_steps=50", "+callbacks.signal._target_=test_preemption.SigtermAfterTheCheck",
    ))  # fmt: skip
    saved = safe_load(tmp_path / "checkpoints" / "last.ckpt")
    assert results["preempted"] is True and results["global_step"] == saved["global_step"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["preempted"] is True


class SigtermInStep2(Callback):
    """Sends this process SIGTERM as step 2 starts: Preemption sees it at that batch's end."""

    def on_train_batch_start(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_preempted_run_neither_validates_again_nor_writes_a_best_checkpoint(tmp_path: Path) -> None:
    """Before: setting should_stop mid-epoch made Lightning validate once more, and ModelCheckpoint
    wrote best-epoch000-step000003.ckpt beside last.ckpt (seen in the process-group SIGTERM test)."""
    results = train(make_cfg(
        tmp_path, "model.preset=tiny", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.batch_size=8", "data.synthetic_sizes={train: 400, val: 8, test: 8}",
        "trainer.max_steps=50", "+callbacks.signal._target_=test_preemption.SigtermInStep2",
    ))  # fmt: skip
    assert results["preempted"] is True and results["global_step"] == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]
    assert not any(key.startswith("val/") for key in results), results
