"""How clusters end and break runs, and results that were silently wrong (issue 28): a signal to
the whole process group, non-finite buffers, one last.ckpt, checkpoint paths that are not
checkpoints or are of another task, config values out of range, runs that skipped every example,
8-bit depth PNGs and label spellings. Every case here failed before the change that fixed it (the
CoNLL word that becomes no token is a case of tests/test_bad_inputs.py)."""

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
from test_preemption import ARGS as PREEMPTION_ARGS
from test_preemption import start
from test_robustness import CLI, run_cli
from test_sweeps import processes_mentioning

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
def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
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
    proc = start(tmp_path, run, "trainer.max_steps=100000", *workers, new_session=True)
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
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]  # no last-v1, no best-*


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (its loader workers)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


@pytest.mark.slow
def test_submitit_requeue_after_a_signal_to_the_whole_job_resumes_from_the_preemption_checkpoint(tmp_path: Path) -> None:
    """submitit's own requeue path (hydra/launcher=submitit_local): its SIGUSR2 handler
    (checkpoint the submission, requeue, exit 144) runs after Preemption wrote last.ckpt, the
    local controller starts the job again, and with ``ckpt_path=last`` it resumes from that
    checkpoint, to the end. The signal goes to the job's process and its loader workers, as a
    scheduler signals a job step (not to the submitting ``-m`` process, which is not in the job).
    Unlike the other cases here this one also passed before workers ignored the signal: the job
    exits before it asks a dead worker for a batch. It covers the requeue path end to end."""
    sweep = tmp_path / "sweep"
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", *PREEMPTION_ARGS, "hydra/launcher=submitit_local",
         "hydra.launcher.timeout_min=10", "trainer.max_steps=400", "data.num_workers=1", "ckpt_path=last",
         f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(last, proc, timeout=240)
        mentioning = processes_mentioning("submitit.core._submit")  # the job and its forked workers
        jobs = [pid for pid in mentioning if all(pid not in descendants(other) for other in mentioning)]
        assert len(jobs) == 1, mentioning
        workers = descendants(jobs[0])
        assert workers, "the job runs no loader worker"
        for pid in [jobs[0], *workers]:
            os.kill(pid, signal.SIGUSR2)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    logs = "\n".join(p.read_text() for p in sweep.rglob("*_log.*"))
    assert "Requeued job" in logs and "preempted: checkpoint written" in logs, logs[-3000:]
    assert "Restored all states from the checkpoint" in logs and "Traceback" not in logs, logs[-3000:]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["global_step"] == 400 and metrics["preempted"] is False, metrics
    assert sorted(p.name for p in last.parent.glob("last*.ckpt")) == ["last.ckpt"]


# ---- config mistakes: one line ----------------------------------------------------------------
def one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(("override", "expected"), [
    ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1"),
    ("data.batch_size=-4", "data.batch_size=-4: must be an integer >= 1"),
    ("optim.lr=-1", "optim.lr=-1: must be a number > 0"),
    ("data.num_workers=-2", "data.num_workers=-2: must be an integer >= 0 (or null)"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio=1.5: must be a number >= 0 and <= 1"),
    ("trainer.max_steps=abc", "trainer.max_steps=abc: must be an integer >= -1"),
    ("data.batch_size=true", "data.batch_size=True: must be an integer >= 1"),
])
def test_value_out_of_range_is_one_line_before_anything_is_built(override: str, expected: str, tmp_path: Path) -> None:
    from headstart.run.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        train(make_cfg(tmp_path, *TINY, override))
    assert str(caught.value) == expected
    assert not (tmp_path / "checkpoints").exists()


def test_max_steps_abc_from_the_command_line_is_headstarts_line_not_hydras(tmp_path: Path) -> None:
    """Before: ``'<' not supported between instances of 'str' and 'int'``."""
    line = one_error(run_cli("train.py", tmp_path, *CLI, "model.preset=tiny", "trainer.max_steps=abc",
                             f"hydra.run.dir={tmp_path}/run"))
    assert line == "error: trainer.max_steps=abc: must be an integer >= -1", line


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-step tiny image classification run: its directory (checkpoints/last.ckpt in it)."""
    run = tmp_path_factory.mktemp("image_run")
    train(make_cfg(run, *TINY, "trainer.max_steps=2", "callbacks.last_checkpoint.every_n_train_steps=1"))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.mark.slow
def test_ckpt_path_that_is_a_directory_or_not_a_checkpoint_is_named_as_such(image_checkpoint: Path, tmp_path: Path) -> None:
    """Before: train.py IsADirectoryError; README.md "the checkpoint holds code"; eval.py on a
    directory "checkpoint not found"."""
    run = [*CLI, "model.preset=tiny", "trainer.max_steps=1", f"hydra.run.dir={tmp_path}/run"]
    line = one_error(run_cli("train.py", tmp_path, *run, f"ckpt_path={image_checkpoint}"))
    assert f"{image_checkpoint} is a directory, not a checkpoint file; pass one of the checkpoints in it:" in line, line
    assert "last.ckpt" in line
    line = one_error(run_cli("train.py", tmp_path, *run, f"ckpt_path={ROOT / 'README.md'}"))
    assert line == f"error: {ROOT / 'README.md'}: not a checkpoint (a file torch.save writes is a zip archive or a pickle)"
    line = one_error(run_cli("train.py", tmp_path, *run, f"ckpt_path={tmp_path}/nothing.ckpt"))
    assert line == f"error: ckpt_path={tmp_path}/nothing.ckpt: checkpoint not found", line
    line = one_error(run_cli("eval.py", tmp_path, f"ckpt_path={image_checkpoint / 'checkpoints'}", "split=val",
                             f"hydra.run.dir={tmp_path}/eval"))
    assert "is a directory, not a checkpoint file; pass one of the checkpoints in it:" in line, line


@pytest.mark.slow
def test_resuming_another_tasks_checkpoint_names_both_tasks(image_checkpoint: Path, tmp_path: Path) -> None:
    """Before: Lightning's state_dict mismatch (missing / unexpected keys)."""
    last = image_checkpoint / "checkpoints" / "last.ckpt"
    line = one_error(run_cli("train.py", tmp_path, *CLI, "task=text_classification", "model.preset=tiny",
                             f"ckpt_path={last}", f"hydra.run.dir={tmp_path}/run"))
    assert line.startswith(f"error: ckpt_path={last}: this checkpoint is task=image_classification; "
                           "you asked for task=text_classification"), line


# ---- one last.ckpt ------------------------------------------------------------------------------
@pytest.mark.slow
def test_resuming_a_copied_run_in_place_overwrites_last_ckpt(image_checkpoint: Path, tmp_path: Path) -> None:
    """Before: the copy wrote last-v1.ckpt and left last.ckpt at the old step, so the next
    ``ckpt_path=last`` went back in time."""
    import shutil

    copy = tmp_path / "copied"
    shutil.copytree(image_checkpoint, copy)
    step = safe_load(copy / "checkpoints" / "last.ckpt")["global_step"]
    results = train(make_cfg(copy, *TINY, f"trainer.max_steps={step + 2}", "callbacks.last_checkpoint.every_n_train_steps=1",
                             "ckpt_path=last"))
    assert results["global_step"] == step + 2
    assert sorted(p.name for p in (copy / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    assert safe_load(copy / "checkpoints" / "last.ckpt")["global_step"] == step + 2


def test_ckpt_path_last_picks_the_furthest_step_not_the_newest_file(tmp_path: Path) -> None:
    from headstart.run.resume import newest_by_step

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 40, "state_dict": {}}, folder / "last-v1.ckpt")
    time.sleep(0.01)
    torch.save({"global_step": 12, "state_dict": {}}, folder / "last.ckpt")  # written later, but behind
    (folder / "last-v2.ckpt").write_text("not a checkpoint")
    assert newest_by_step(folder.glob("last*.ckpt")) == folder / "last-v1.ckpt"


# ---- no silent results ----------------------------------------------------------------------------
def test_skip_that_skips_every_training_example_is_an_error_not_a_best_checkpoint(tmp_path: Path) -> None:
    """Before: rc 0 and a "best" checkpoint of a model that never saw an example."""
    import numpy as np
    from PIL import Image

    from headstart.data.errors import DataError

    for split, count in (("train", 6), ("val", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                if split == "train":
                    (folder / f"{i}.png").write_bytes(b"")  # zero bytes: every training image is bad
                else:
                    Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    overrides = ["model.preset=tiny", "trainer.num_sanity_val_steps=0", "data.source=folder",
                 f"data.path={tmp_path / 'images'}", "data.batch_size=4", "data.on_error=skip", "trainer.max_epochs=2"]
    with pytest.raises(DataError, match=r"^data\.on_error=skip skipped every training example so far \(12, first .*0\.png"):
        train(make_cfg(tmp_path / "run", *overrides))
    assert not list((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))


def test_an_8_bit_depth_png_is_an_error_unless_its_scale_is_given(tmp_path: Path) -> None:
    """Before: read as millimetres, 0-0.255 m (abs_rel 55 on real data) without a word."""
    import numpy as np
    from PIL import Image

    from headstart.data.depth_sources import load_depth
    from headstart.data.errors import DataError
    from headstart.ops.depth_io import read_depth, write_depth_png

    eight = tmp_path / "depth8.png"
    Image.fromarray(np.full((4, 5), 200, dtype=np.uint8)).save(eight)
    with pytest.raises(DataError, match=r"depth8\.png: an 8-bit PNG .*set data\.png8_scale=<units per metre>"):
        load_depth(eight, 1000.0)
    assert np.allclose(read_depth(eight, 1000.0, png8_scale=50.0), 4.0)  # 200 units at 50 per metre
    sixteen = tmp_path / "depth16.png"
    write_depth_png(sixteen, np.full((4, 5), 2.5))
    assert np.allclose(read_depth(sixteen), 2.5)  # 16-bit millimetres as before


def test_label_spellings_merge_with_a_warning_and_case_clashes_are_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: ``pos ``, ``Pos`` and ``pos`` were 3 classes; folders ``Cat/`` and ``cat/`` two."""
    import numpy as np
    from hydra.utils import instantiate
    from PIL import Image

    from conftest import make_cfg as compose
    from headstart.data.errors import DataError

    def datamodule(*overrides: str) -> object:
        cfg = compose(tmp_path / "run", "model.preset=tiny", *overrides)
        return instantiate(cfg.data, _convert_="all")

    rows = [{"text": f"text {i}", "label": label} for i, label in enumerate(["pos ", "pos", "neg", " neg", "pos"] * 4)]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = ["task=text_classification", "data.source=jsonl", f"data.train_path={train_file}", f"data.val_path={train_file}"]
    with caplog.at_level("WARNING", logger="headstart.data.labels"):
        assert datamodule(*text).info()["labels"] == ["neg", "pos"]
    assert "labels with surrounding spaces merged: ' neg' / 'neg' -> 'neg'; 'pos' / 'pos ' -> 'pos'" in caplog.text

    rows[0]["label"] = "Pos"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"train\.jsonl: class names that differ only in case: 'Pos' / 'pos'; .*case_sensitive_labels=true"):
        datamodule(*text).info()
    assert datamodule(*text, "data.case_sensitive_labels=true").info()["labels"] == ["Pos", "neg", "pos"]

    for name in ("Cat", "cat", "dog"):
        folder = tmp_path / "images" / "train" / name
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 60 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    images = ["data.source=folder", f"data.path={tmp_path / 'images'}"]
    with pytest.raises(DataError, match=r"class names that differ only in case: 'Cat' / 'cat'"):
        datamodule(*images).info()
    assert datamodule(*images, "data.case_sensitive_labels=true").info()["labels"] == ["Cat", "cat", "dog"]
