"""Runs that survive: worker errors as one line, option values checked, checkpoints treated as
data (no pickled code, no foreign ``_target_``), and the NaN/Inf policy (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_cfg
from headstart.callbacks.nonfinite import NonFiniteLossError
from headstart.data.errors import DataError
from headstart.run.build import build
from headstart.run.errors import ConfigError, one_line, one_line_errors
from headstart.run.safe_load import safe_load
from headstart.train import train

TINY = [
    "model.preset=tiny", "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "data.batch_size=8", "data.synthetic_sizes={train: 96, val: 8, test: 8}",
]
CLI = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
       "~callbacks.rich_model_summary", "logger=csv", "data.num_workers=0"]


def run_cli(script: str, tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / script), *args, f"paths.log_dir={tmp_path}/logs"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ---- errors raised in DataLoader workers ------------------------------------------------------
class Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        raise DataError(f"clips/{i}.wav: zero-length audio")


def test_worker_error_is_unwrapped_to_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    loader = torch.utils.data.DataLoader(Broken(), batch_size=2, num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert "Caught DataError in DataLoader worker" in str(caught.value)  # torch's wrapper, as received
    assert one_line(caught.value) == "clips/0.wav: zero-length audio"

    @one_line_errors
    def main() -> None:
        next(iter(torch.utils.data.DataLoader(Broken(), batch_size=2, num_workers=1)))

    with pytest.raises(SystemExit):
        main()
    assert capsys.readouterr().err == "error: clips/0.wav: zero-length audio\n"


@pytest.mark.slow
def test_bad_image_in_a_loader_worker_is_one_line_naming_the_file(tmp_path: Path, shapes_folder: Path) -> None:
    good = next((shapes_folder / "train" / "circle").glob("*.png"))
    bad = shapes_folder / "train" / "circle" / "zz_truncated.png"
    bad.write_bytes(good.read_bytes()[:60])  # a PNG header and nothing after: fails only when decoded
    proc = run_cli("train.py", tmp_path, *TINY, *CLI, "data.source=folder", f"data.path={shapes_folder}",
                   "data.num_workers=1", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and str(bad) in lines[0], proc.stderr[-3000:]
    assert "Caught" not in lines[0] and "worker" not in lines[0]


# ---- option values ----------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "named"), [
    ("data.on_error=ignore", "data.on_error=ignore is not one of raise|skip"),
    ("data.source=folders", "data.source=folders is not one of synthetic|folder|hf"),
])
def test_a_misspelled_option_is_one_config_error(tmp_path: Path, override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("|", r"\|")):
        build(make_cfg(tmp_path, "model.preset=tiny", override))


# ---- checkpoints are data, not code -----------------------------------------------------------
class WritesMarker:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def pickled_code_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker, ckpt = tmp_path / "marker", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "headstart": {"payload": WritesMarker(marker)}}, ckpt)
    return ckpt, marker


def test_the_crafted_checkpoint_runs_code_unless_refused(tmp_path: Path) -> None:
    ckpt, marker = pickled_code_checkpoint(tmp_path)
    torch.load(ckpt, weights_only=False)  # what an unguarded load does
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ConfigError, match=r"evil\.ckpt: refused to load: the checkpoint holds code \(posix\.system\)"):
        safe_load(ckpt)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
def test_pickled_code_is_refused_by_every_entry_point(tmp_path: Path, script: str) -> None:
    ckpt, marker = pickled_code_checkpoint(tmp_path)
    extra = {"train.py": [*TINY, *CLI, "trainer.max_steps=1"], "eval.py": ["split=val"], "predict.py": [f"inputs={ckpt}"]}[script]
    proc = run_cli(script, tmp_path, f"ckpt_path={ckpt}", *extra, f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_lines(proc.stderr) == [
        f"error: {ckpt}: refused to load: the checkpoint holds code (posix.system); only tensors and plain data are loaded"
    ]
    assert not marker.exists()


def test_a_checkpoint_adds_only_task_model_and_data_choices_to_the_command_line(tmp_path: Path) -> None:
    from headstart.run.checkpoint import with_checkpoint_choices

    ckpt = tmp_path / "choices.ckpt"
    choices = {"task": "image_classification", "model": "../../../tmp/x", "data": "image_classification",
               "+hydra.callbacks.x._target_": "os.system"}  # a Hydra callback would be instantiated at start
    torch.save({"state_dict": {}, "headstart": {"choices": choices}}, ckpt)
    argv = with_checkpoint_choices(["eval.py", f"ckpt_path={ckpt}", "data=cifar10"])
    assert argv == ["eval.py", "task=image_classification", f"ckpt_path={ckpt}", "data=cifar10"]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["eval.py", "predict.py"])
def test_a_foreign_target_in_a_checkpoint_config_is_refused(tmp_path: Path, script: str) -> None:
    """From the command line (tests/test_checkpoint_safety.py crafts every position in-process)."""
    from hydra.utils import instantiate

    marker = tmp_path / "copied"
    payload = {"_target_": "headstart.data.tokenizers.shutil.copyfile", "src": str(ROOT / "README.md"), "dst": str(marker)}
    best = train(make_cfg(tmp_path / "run", *TINY, "trainer.max_steps=1"))["best_checkpoint"]
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["headstart"]["config"]["data"]["transform_hook"] = payload  # Hydra would build it before the datamodule
    ckpt = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, ckpt)
    instantiate(payload)  # the target is live: instantiated, it writes the file (a prefix allow-list passed it)
    assert marker.exists()
    marker.unlink()
    extra = ["split=val"] if script == "eval.py" else [f"inputs={ROOT / 'README.md'}"]
    proc = run_cli(script, tmp_path, f"ckpt_path={ckpt}", *extra, f"hydra.run.dir={tmp_path}/run2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "its stored config has data.transform_hook=" in lines[0], proc.stderr[-2000:]
    assert not marker.exists()


# ---- NaN/Inf policy ---------------------------------------------------------------------------
HUGE_LR = [*TINY, "optim.lr=1e6", "trainer.max_steps=12", "trainer.log_every_n_steps=10",
           "callbacks.last_checkpoint.every_n_train_steps=1"]


def test_nan_stop_names_the_batch_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError) as caught:
        train(make_cfg(tmp_path, *HUGE_LR))
    message = str(caught.value)
    assert "\n" not in message and "lower optim.lr" in message
    assert "loss is nan at step" in message and "examples synthetic[train] row" in message, message
    nan_step = int(message.split("at step ")[1].split()[0])
    last = safe_load(tmp_path / "checkpoints" / "last.ckpt")
    assert 1 <= last["global_step"] < nan_step
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if torch.is_floating_point(t))
    saved = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert all(torch.isfinite(t).all() for p in saved for t in safe_load(p)["state_dict"].values() if torch.is_floating_point(t))


def test_nan_skip_counts_skipped_updates_and_stops_past_the_limit(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path / "a", *HUGE_LR, "trainer.max_steps=6", "callbacks.nonfinite.action=skip",
                             "callbacks.nonfinite.max_skipped=100"))
    written = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert written["nonfinite_skipped"] == results["nonfinite_skipped"] >= 1
    assert written["global_step"] == 6
    expected = r"^3 updates skipped for non-finite gradients by step \d+ \(callbacks\.nonfinite\.max_skipped=2\)"
    with pytest.raises(NonFiniteLossError, match=expected):
        train(make_cfg(tmp_path / "b", *HUGE_LR, "callbacks.nonfinite.action=skip", "callbacks.nonfinite.max_skipped=2"))
