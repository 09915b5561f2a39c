"""W&B audio players for a few clips of a batch (validation media of the audio tasks)."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def audio_players(waveforms: torch.Tensor, lengths: torch.Tensor, sample_rate: int, captions: Sequence[str]) -> list[Any]:
    """waveforms [B, T] (normalised), lengths [B] -> one ``wandb.Audio`` per caption, padding cut off.

    Normalised clips are scaled to peak 0.9 so the players neither clip nor whisper.
    """
    import wandb

    players = []
    for wave, length, caption in zip(waveforms.detach().float().cpu(), lengths.cpu().tolist(), captions):
        clip = wave[:length]
        clip = 0.9 * clip / clip.abs().max().clamp(min=1e-6)
        players.append(wandb.Audio(clip.numpy(), sample_rate=sample_rate, caption=caption))
    return players
