"""Exact resume: a run killed with SIGKILL mid-epoch and resumed from its last.ckpt ends with the
weights of an uninterrupted run (max abs difference <= 1e-6), logs the same train/loss rows after
the resume point, and continues the same W&B run.

Each test runs real ``train.py`` subprocesses with default settings (loader workers included):
the reference and the run to kill start together; the killed run is SIGKILLed as soon as its
first ``last.ckpt`` (step 4 of 6 in epoch 0) appears, then resumed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT

STEPS_PER_EPOCH = 6  # 48 training examples, batches of 8
EVERY = 4  # last.ckpt at steps 4 (mid-epoch), 8 (mid-epoch) and 12 (the final weights)
COMMON = [
    "model.preset=tiny", "trainer.accelerator=cpu", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
    f"callbacks.last_checkpoint.every_n_train_steps={EVERY}", "data.batch_size=8",
    "data.synthetic_sizes={train: 48, val: 8, test: 0}", "test=false", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "~callbacks.rich_progress_bar", "~callbacks.rich_model_summary",
]
TASKS = {
    "image_classification": ["task=image_classification", "model=vit", "data.synthetic_image_size=32"],
    "text_classification": ["task=text_classification", "logger=csv"],
    "speech_recognition": ["task=speech_recognition", "data.synthetic_max_words=1", "logger=csv"],
}


def start(tmp_path: Path, run_dir: Path, task: str, *extra: str) -> subprocess.Popen:
    # Bit-exact comparison needs one thread count on every side: the reference and the killed run
    # start together, and each would otherwise size its threads by what the other keeps busy.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *TASKS[task], *COMMON, *extra,
         f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}/logs"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def finish(proc: subprocess.Popen, run_dir: Path, timeout: int = 240) -> None:
    assert proc.wait(timeout=timeout) == 0, (run_dir.parent / f"{run_dir.name}.log").read_text()[-3000:]


def kill_after_first_last_ckpt(proc: subprocess.Popen, run_dir: Path) -> tuple[Path, int]:
    """SIGKILL ``proc`` as soon as ``last.ckpt`` exists (Lightning writes it atomically);
    returns the checkpoint and its step (a run resumed in place overwrites it later)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists():
        assert proc.poll() is None, (run_dir.parent / f"{run_dir.name}.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no last.ckpt within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return last, torch.load(last, map_location="cpu", weights_only=True)["global_step"]


def losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss; a run resumed in place appends to the killed run's file, so the last row wins."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def max_weight_difference(a: Path, b: Path) -> float:
    wa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    wb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())


def check_same_run(reference: Path, resumed: Path, step: int) -> None:
    assert 0 < step % STEPS_PER_EPOCH and step < 2 * STEPS_PER_EPOCH  # killed mid-epoch, before the end
    final = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert final == 2 * STEPS_PER_EPOCH
    diff = max_weight_difference(reference / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt")
    assert diff <= 1e-6, f"max abs weight difference {diff:.3g}"
    ref_loss, res_loss = losses(reference), losses(resumed)
    after = {s: v for s, v in res_loss.items() if s >= step}
    assert len(after) >= 2 * STEPS_PER_EPOCH - step - 1
    assert after == {s: ref_loss[s] for s in after}


@pytest.mark.slow
def test_image_classification_resumes_exactly_from_the_newest_run_and_continues_its_wandb_run(tmp_path: Path) -> None:
    """``ckpt_path=last`` from a new run directory: the newest last.ckpt under logs/<task>/runs."""
    killed_dir = tmp_path / "logs" / "image_classification" / "runs" / "killed"
    killed_dir.parent.mkdir(parents=True)
    killed = start(tmp_path, killed_dir, "image_classification")
    reference = start(tmp_path, tmp_path / "reference", "image_classification", "logger=csv")
    last, step = kill_after_first_last_ckpt(killed, killed_dir)
    assert torch.load(last, map_location="cpu", weights_only=True)["headstart"]["threads"] == 1  # for the resumed run
    resumed = start(tmp_path, tmp_path / "resumed", "image_classification", "ckpt_path=last")
    finish(resumed, tmp_path / "resumed")
    finish(reference, tmp_path / "reference")
    check_same_run(tmp_path / "reference", tmp_path / "resumed", step)
    # the resumed run logs into the killed run's W&B run (same id), not a new one
    killed_ids = [p.name.rsplit("-", 1)[1] for p in (killed_dir / "wandb").glob("offline-run-*")]
    resumed_ids = [p.name.rsplit("-", 1)[1] for p in (tmp_path / "resumed" / "wandb").glob("offline-run-*")]
    assert len(killed_ids) == 1 and resumed_ids == killed_ids


@pytest.mark.slow
def test_text_classification_resumes_exactly_in_place_with_the_runs_tokenizer(tmp_path: Path) -> None:
    """``hydra.run.dir=<killed run> ckpt_path=last``. Training a tokenizer is not deterministic, so
    the reference run builds the same tiny BERT from the killed run's saved config and tokenizer,
    and the resumed run must reuse that tokenizer instead of training another."""
    killed_dir = tmp_path / "killed"
    killed = start(tmp_path, killed_dir, "text_classification")
    saved = killed_dir / "backbone"
    while not (saved / "tokenizer_config.json").exists():
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.05)
    reference = start(
        tmp_path, tmp_path / "reference", "text_classification",
        f"model.checkpoint={saved}", "model.pretrained=false", "model.preset=null",
    )  # fmt: skip
    vocab = json.loads((saved / "tokenizer.json").read_text())["model"]["vocab"]
    _, step = kill_after_first_last_ckpt(killed, killed_dir)
    resumed = start(tmp_path, killed_dir, "text_classification", "ckpt_path=last")
    finish(resumed, killed_dir)
    finish(reference, tmp_path / "reference")
    assert json.loads((saved / "tokenizer.json").read_text())["model"]["vocab"] == vocab  # not retrained
    check_same_run(tmp_path / "reference", killed_dir, step)


@pytest.mark.slow
def test_speech_recognition_resumes_exactly_from_a_checkpoint_path(tmp_path: Path) -> None:
    """Length-grouped batches of clips and wav2vec2's random time masking, resumed mid-epoch."""
    killed_dir = tmp_path / "killed"
    killed = start(tmp_path, killed_dir, "speech_recognition")
    reference = start(tmp_path, tmp_path / "reference", "speech_recognition")
    last, step = kill_after_first_last_ckpt(killed, killed_dir)
    resumed = start(tmp_path, tmp_path / "resumed", "speech_recognition", f"ckpt_path={last}")
    finish(resumed, tmp_path / "resumed")
    finish(reference, tmp_path / "reference")
    check_same_run(tmp_path / "reference", tmp_path / "resumed", step)


# ---- fast: what a resumed run decides before building --------------------------------------------


def test_ckpt_path_last_means_the_runs_own_then_the_newest_run_of_the_task(tmp_path: Path) -> None:
    from conftest import make_cfg
    from headstart.run.errors import ConfigError
    from headstart.run.resume import resolve_ckpt_path

    cfg = make_cfg(tmp_path / "new", "ckpt_path=last")  # paths.log_dir: tmp_path/new/logs
    with pytest.raises(ConfigError, match="ckpt_path=last: no last.ckpt"):
        resolve_ckpt_path(cfg)
    runs = tmp_path / "new" / "logs" / "image_classification" / "runs"
    for i, name in enumerate(("2026-01-02_run", "2026-01-01_run")):  # newest by time, not by name
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(runs / name / "checkpoints" / "last.ckpt", (1e9 + i, 1e9 + i))
    assert resolve_ckpt_path(cfg) == str(runs / "2026-01-01_run" / "checkpoints" / "last.ckpt")
    own = tmp_path / "new" / "checkpoints" / "last.ckpt"  # hydra.run.dir=<a killed run>: resume in place
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x")
    assert resolve_ckpt_path(cfg) == str(own)
    assert resolve_ckpt_path(make_cfg(tmp_path / "p", "ckpt_path=/some/file.ckpt")) == "/some/file.ckpt"


def test_a_resumed_preset_reuses_the_saved_tokenizer_instead_of_training_another(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from conftest import make_cfg
    from headstart.run.build import MODEL_META_KEYS, without
    from headstart.run.resume import reuse_run_tokenizer, wandb_resume_kwargs

    sizes = "data.synthetic_sizes={train: 64, val: 8, test: 0}"
    cfg = make_cfg(tmp_path, "task=text_classification", "model.preset=tiny", sizes)
    first = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all")
    datamodule = instantiate(cfg.data, _convert_="all")
    first.attach(**datamodule.configure(first.data_spec()))
    first.save_for_rebuild()  # config + tokenizer into the run directory, as the builder does
    meta = {"model_rebuild": first.rebuild_kwargs(), "wandb_run_id": "abc123"}
    again = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all")
    assert reuse_run_tokenizer(again, meta)
    assert again.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert again.data_spec()["tokenizer"] is again.tokenizer  # the data takes it and trains none
    assert not reuse_run_tokenizer(again, {})  # a fresh run trains its own
    assert wandb_resume_kwargs(meta) == {"id": "abc123", "resume": "allow"} and wandb_resume_kwargs({}) == {}
