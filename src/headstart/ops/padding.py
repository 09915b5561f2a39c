"""How much of a padded audio batch is padding (logged by the audio tasks)."""

from __future__ import annotations

from typing import Any

import torch


def padding_fraction(batch: dict[str, Any]) -> torch.Tensor:
    """Share of the padded waveform batch that is padding (stays on device: no host sync)."""
    waves = batch["waveforms"]
    return 1.0 - batch["lengths"].sum().float() / max(1, waves.numel())
