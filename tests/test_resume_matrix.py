"""Exact resume at every position (issue 28): image, text and ASR, with 0, 1 and 2 loader workers.

An uninterrupted run of 2 epochs x 6 steps saves a full checkpoint at each position a cluster
can stop a job at: mid-epoch 0 (step 4), the end of epoch 0's last batch (step 6, before its
validation), after epoch 0's validation, at epoch 0's end, mid-epoch 1 (step 9); a second run
is sent SIGTERM in step 9 (Preemption writes last.ckpt). A SIGKILLed run resumes from whichever
of these it wrote last, so each is resumed here and must end with the uninterrupted run's
weights (max |dW| == 0.0) and log the same train/loss rows after the resume point.

Before the fixes in data/base.py:TrainLoader, 18 of the 54 cells failed: with workers, any
resume in epoch 1 replayed epoch 0's order (max |dW| 2e-5 to 1.7e-4), and a checkpoint from an
epoch's last batch ended the resumed run at that step (1.5e-4), for every worker count.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from test_resume import losses, max_weight_difference

from conftest import make_cfg
from headstart.train import train

TASKS = {
    "image": ["task=image_classification", "model=vit", "data.synthetic_image_size=32"],
    "text": ["task=text_classification"],
    "asr": ["task=speech_recognition", "data.synthetic_max_words=1"],
}
COMMON = [
    "model.preset=tiny", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "data.batch_size=8",
    "callbacks.last_checkpoint.every_n_train_steps=3", "data.synthetic_sizes={train: 48, val: 8, test: 0}",
    "test=false", "callbacks.media=null",
]
STEPS_PER_EPOCH = 6


class SaveAtEveryPosition(Callback):
    """Full checkpoints (what last.ckpt holds) at each position, into ``dirpath``."""

    def __init__(self, dirpath: str) -> None:
        self.dir = Path(dirpath)
        self.dir.mkdir(parents=True, exist_ok=True)

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        name = {4: "mid_epoch0", STEPS_PER_EPOCH: "last_batch_of_epoch0", 9: "mid_epoch1"}.get(trainer.global_step)
        if name:
            trainer.save_checkpoint(self.dir / f"{name}.ckpt")

    def on_validation_end(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == STEPS_PER_EPOCH and not trainer.sanity_checking:
            trainer.save_checkpoint(self.dir / "after_validation0.ckpt")

    def on_train_epoch_end(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == STEPS_PER_EPOCH:
            trainer.save_checkpoint(self.dir / "end_of_epoch0.ckpt")


class SigtermInStep9(Callback):
    def __init__(self) -> None:
        self.sent = False

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == 8 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("task", list(TASKS))
def test_resume_from_every_position_ends_with_the_uninterrupted_runs_weights(task: str, workers: int, tmp_path: Path) -> None:
    overrides = [*TASKS[task], *COMMON, f"data.num_workers={workers}"]
    reference, saves = tmp_path / "reference", tmp_path / "positions"
    train(make_cfg(reference, *overrides, "+callbacks.positions._target_=test_resume_matrix.SaveAtEveryPosition",
                   f"+callbacks.positions.dirpath={saves}"))  # fmt: skip
    final, reference_loss = reference / "checkpoints" / "last.ckpt", losses(reference)
    assert len(reference_loss) == 2 * STEPS_PER_EPOCH

    # A tokenizer trained on the fly differs run to run: the SIGTERM run builds the reference's.
    same_model = [f"model.checkpoint={reference}/backbone", "model.pretrained=false", "model.preset=null"] if task == "text" else []
    preempted = tmp_path / "preempted"
    results = train(make_cfg(preempted, *overrides, *same_model, "+callbacks.signal._target_=test_resume_matrix.SigtermInStep9"))
    assert results["preempted"] is True

    checkpoints = {p.stem: p for p in saves.glob("*.ckpt")} | {"sigterm": preempted / "checkpoints" / "last.ckpt"}
    assert len(checkpoints) == 6
    failures = []
    for position, checkpoint in sorted(checkpoints.items()):
        step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
        resumed = tmp_path / f"resumed-{position}"
        train(make_cfg(resumed, *overrides, f"ckpt_path={checkpoint}"))
        diff = max_weight_difference(final, resumed / "checkpoints" / "last.ckpt")
        rows = losses(resumed)
        differ = [s for s in rows if rows[s] != reference_loss.get(s)]
        if diff != 0.0 or differ or sorted(rows) != list(range(step, 2 * STEPS_PER_EPOCH)):
            failures.append(f"{position} (step {step}): max|dW| {diff:.3g}, loss rows {sorted(rows)}, differing {differ}")
    assert not failures, "\n".join(failures)
