"""Preemption: on SIGTERM (or SIGUSR1, SLURM's usual warning signal) write ``last.ckpt`` at the
next batch end and stop cleanly, so ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes the run.

Lightning notes SIGTERM itself (``trainer.received_sigterm``) and then raises
``SIGTERMException`` (a ``SystemExit`` with code 0) after the batch: the process ends with no
checkpoint and no metrics.json. Here the checkpoint is written at that batch end instead, the
flag is cleared and ``trainer.should_stop`` is set, so fit returns normally and train.py writes
metrics.json with ``"preempted": true``.

A handler that was there before (Lightning's SLURM auto-requeue on SIGUSR1: hpc checkpoint +
``scontrol requeue``; submitit's on SIGUSR2 under ``hydra/launcher=slurm``: requeue, then exit)
runs after the checkpoint is written, not at the signal: submitit's would otherwise end the
process before anything is saved. Its requeued job resumes with ``ckpt_path=last``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class Preemption(Callback):
    """Saves ``<dirpath>/<filename>`` and stops when the process is told to leave.

    ``signals``: names of extra signals handled like SIGTERM (SIGTERM itself is Lightning's).
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple[str, ...] = ("SIGUSR1", "SIGUSR2")) -> None:
        self.path = str(Path(dirpath) / filename)
        self.signals = tuple(getattr(signal, name) for name in signals if hasattr(signal, name))
        self.preempted = False
        self.saved_after_s: float | None = None  # seconds from the signal to the written checkpoint
        self._signal_time: float | None = None
        self._previous: dict[int, Any] = {}
        self._pending: list[tuple[int, FrameType | None]] = []  # signals whose previous handler waits for the save
        self._training = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After Lightning registered its own handlers (Trainer._run), which are chained below.
        # Lightning puts every signal's pre-fit handler back when fit ends (_SignalConnector.teardown).
        self._training = True
        for signum in (signal.SIGTERM, *self.signals):
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread: leave signals to whoever owns them
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal_time = self._signal_time or time.monotonic()
        # SIGTERM's previous handler is Lightning's notifier (sets trainer.received_sigterm): at once.
        if signum != signal.SIGTERM and self._training and not self.preempted:
            self._pending.append((signum, frame))
        else:
            self._run_previous([(signum, frame)])

    def _run_previous(self, received: list[tuple[int, FrameType | None]]) -> None:
        for signum, frame in received:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)

    def _asked_to_leave(self, trainer: Trainer) -> bool:
        if trainer.received_sigterm and self._signal_time is None:
            self._signal_time = time.monotonic()
        local = self._signal_time is not None
        # Every rank must decide together: saving is collective. One tiny reduce, DDP only.
        return trainer.strategy.reduce_boolean_decision(local, all=False) if trainer.world_size > 1 else local

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.preempted or not self._asked_to_leave(trainer):
            return
        self._save(trainer)
        # Fit returns normally (Lightning would otherwise raise SIGTERMException after this hook).
        trainer._signal_connector.received_sigterm = False
        trainer.should_stop = True
        # Lightning validates once more when should_stop is set mid-epoch, and ModelCheckpoint then
        # writes a best-* of that partial epoch: time the grace period does not have, and a second
        # checkpoint beside last.ckpt. Neither happens for a preempted run.
        trainer.fit_loop.epoch_loop._skip_next_val = True
        for callback in trainer.checkpoint_callbacks:
            callback._last_global_step_saved = trainer.global_step  # its epoch-end save is skipped
        pending, self._pending = self._pending, []
        self._run_previous(pending)  # e.g. submitit: requeue this job, then exit

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._training = False
        pending, self._pending = self._pending, []
        self._run_previous(pending)  # a signal after the last training batch

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """SIGTERM outside a training batch (e.g. during validation): still leave a checkpoint."""
        if isinstance(exception, SIGTERMException) and not self.preempted:
            self._save(trainer)

    def _save(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resume continues from it
        self.preempted = True
        if self._signal_time is not None:
            self.saved_after_s = round(time.monotonic() - self._signal_time, 3)
        rank_zero_info(
            f"preempted: checkpoint written to {self.path} at step {trainer.global_step} "
            f"({self.saved_after_s} s after the signal); resume with ckpt_path={self.path}"
        )
