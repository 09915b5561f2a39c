"""How much of a padded audio batch is padding (logged by the audio tasks)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule


def padding_fraction(batch: dict[str, Any]) -> torch.Tensor:
    """Share of the padded waveform batch that is padding (stays on device: no host sync)."""
    waves = batch["waveforms"]
    return 1.0 - batch["lengths"].sum().float() / max(1, waves.numel())


def log_padding(task: LightningModule, batch: dict[str, Any]) -> None:
    """``train/padding_fraction`` per step, and ``train/padding_fraction_epoch``: padded / all samples
    over the epoch (each step weighted by its padded size, so the epoch figure is the epoch's
    share of padding, not a mean of per-step shares). This process's batches: no cross-rank
    reduction, which would cost a collective at every step."""
    task.log("train/padding_fraction", padding_fraction(batch), on_step=True, on_epoch=True,
             batch_size=batch["waveforms"].numel())
