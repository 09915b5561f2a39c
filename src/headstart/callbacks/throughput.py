"""Training throughput and peak memory for metrics.json."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def batch_size_of(batch: Any) -> int:
    """Examples in a batch: the leading size of its first tensor (read from the shape, no sync)."""
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 0


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device``, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class Throughput(Callback):
    """Counts training examples (all ranks) and time spent in training; validation and the
    checkpoint writes that follow it are excluded.

    warmup_steps: batches left out of the count (compilation, allocator and loader start-up).
    """

    def __init__(self, warmup_steps: int = 0) -> None:
        self.warmup_steps = warmup_steps
        self._batches = 0
        self.samples = 0
        self.train_seconds = 0.0
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pause()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # Resume at the next training batch, not at validation end: the best-checkpoint write that
        # follows a validation belongs to it (it cost a MiniLM run seconds of "training" time).
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pause()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches += 1
        if self._batches == self.warmup_steps:  # restart the clock after the warm-up batches
            self.samples, self.train_seconds = 0, 0.0
            self._start = time.perf_counter()
            return
        if self._batches > self.warmup_steps:
            self.samples += batch_size_of(batch) * trainer.world_size

    def _pause(self) -> None:
        if self._start is not None:
            self.train_seconds += time.perf_counter() - self._start
            self._start = None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0
