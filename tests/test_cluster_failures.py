"""How clusters end and break runs (issue 28): a signal to the whole process group, non-finite
buffers, checkpoint paths that are not checkpoints, and config values out of range."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_cfg
from headstart.callbacks.nonfinite import NonFiniteLossError, first_nonfinite, weights_of
from headstart.run.safe_load import safe_load
from headstart.train import train

TINY = [
    "model.preset=tiny", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "data.batch_size=4", "data.synthetic_sizes={train: 48, val: 4, test: 4}",
]


# ---- non-finite tensors of any kind -------------------------------------------------------------
def test_first_nonfinite_names_buffers_and_callback_states() -> None:
    bn = torch.nn.BatchNorm1d(3)
    assert first_nonfinite({"state_dict": bn.state_dict()}) is None
    bn.running_var[1] = float("nan")
    checkpoint = {"state_dict": bn.state_dict(), "callbacks": {"EMA": {"shadow": [torch.ones(2), torch.tensor([float("inf")])]}}}
    assert first_nonfinite(checkpoint) == ("state_dict.running_var", 2)
    assert first_nonfinite({"callbacks": {"EMA": {"shadow": [torch.ones(2), torch.tensor([float("inf")])]}}}) == (
        "callbacks.EMA.shadow.1", 1)
    assert first_nonfinite({"rng": torch.ByteTensor([255]), "step": 3}) is None  # integer tensors are not checked
    scores = {"ModelCheckpoint{'monitor': 'val/acc'}": {"kth_value": torch.tensor(float("-inf"))},
              "EarlyStopping{'monitor': 'val/acc'}": {"best_score": torch.tensor(float("inf"))}}
    assert first_nonfinite(weights_of({"state_dict": {"w": torch.ones(1)}, "callbacks": scores})) is None  # +-inf by design


@pytest.mark.slow
@pytest.mark.parametrize("task", [["task=depth_estimation"], ["task=segmentation", "model=segformer"]], ids=["depth", "segformer"])
def test_skip_never_writes_a_checkpoint_with_nonfinite_buffers(task: list[str], tmp_path: Path) -> None:
    """lr 1e30 with action=skip: gradients go bad (skipped), but BatchNorm's running statistics are
    updated in the forward pass and went NaN; the old guard (parameters only) wrote them to last.ckpt."""
    overrides = [*task, *TINY, "optim.lr=1e30", "trainer.max_steps=8", "callbacks.nonfinite.action=skip",
                 "callbacks.nonfinite.max_skipped=100", "callbacks.last_checkpoint.every_n_train_steps=1"]
    try:
        train(make_cfg(tmp_path, *overrides))
    except NonFiniteLossError as error:
        assert "\n" not in str(error) and "no checkpoint written" in str(error), error
    saved = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    for path in saved:
        assert first_nonfinite(weights_of(safe_load(path))) is None, path.name


# ---- a signal to the whole process group ------------------------------------------------------
GROUP_ARGS = [
    "model.preset=tiny", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary", "logger=csv", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1", "data.batch_size=8", "data.synthetic_sizes={train: 8000, val: 8, test: 8}",
    "callbacks.last_checkpoint.every_n_train_steps=2", "trainer.max_steps=100000",
]


def start_group(tmp_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """train.py as the leader of its own process group (as a batch scheduler starts a job step)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *GROUP_ARGS, *extra, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
            raise AssertionError(f"{path} never appeared: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "workers"), [("SIGTERM", ["data.num_workers=1"]),
                                                   ("SIGTERM", ["data.num_workers=2", "data.persistent_workers=true"]),
                                                   ("SIGUSR1", ["data.num_workers=1"])],
                         ids=["sigterm-1-worker", "sigterm-2-persistent-workers", "sigusr1-1-worker"])
def test_signal_to_the_process_group_with_workers_saves_and_exits_0(signame: str, workers: list[str], tmp_path: Path) -> None:
    """Before: rc 1, ``DataLoader worker ... is killed by signal: Terminated``, no last.ckpt, no metrics.json."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc = start_group(tmp_path, run, *workers)
    wait_for(last, proc, timeout=240)
    before = safe_load(last)["global_step"]
    os.killpg(proc.pid, getattr(signal, signame))
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr[-3000:]
    saved = safe_load(last)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["preempted"] is True and metrics["global_step"] == saved["global_step"] > before
    assert sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
