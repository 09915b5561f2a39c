"""Audio pictures: W&B audio players (validation media) and waveform + log-mel figures (predict.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


# ---- pictures for predict.py: waveform, log-mel spectrogram, rows aligned to time under them ------------
MAX_SECONDS = 60.0  # longer files are drawn up to here (the picture would be unreadable anyway)


def read_clip(path: str, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int, bool]:
    """The file's mono waveform [T] (channels averaged), its sample rate, and whether it was cut."""
    import soundfile as sf

    with sf.SoundFile(path) as handle:
        rate = handle.samplerate
        audio = handle.read(frames=int(max_seconds * rate), dtype="float32", always_2d=True)
        cut = handle.frames > len(audio)
    return audio.mean(axis=1), rate, cut


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """wave [T] -> log-mel power in dB [n_mels, frames]: 25 ms windows every 10 ms."""
    import torchaudio

    win, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    n_fft = 1 << max(1, (win - 1).bit_length())
    n_mels = min(n_mels, n_fft // 4)  # fewer mel bands than FFT bins leaves none empty
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels)
    power = mel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    return (10.0 * torch.log10(power.clamp(min=1e-10))).numpy()


def audio_figure(path: str, title: str, extra_rows: Sequence[float] = (), aligned: bool = True) -> tuple[Any, list[Any], float]:
    """A figure with the clip's waveform and log-mel spectrogram (time in seconds, shared x), then
    one axis per ``extra_rows`` height: time-aligned rows (CTC characters, code ids) when
    ``aligned``, else free ones (top-k bars).

    Returns (figure, axes [waveform, spectrogram, *extras], seconds drawn).
    """
    from headstart.viz.figure import new_figure

    wave, rate, cut = read_clip(path)
    seconds = max(len(wave) / rate, 1e-3)
    ratios = [1.0, 2.0, *extra_rows]
    fig, axes = new_figure(10, 1.3 * sum(ratios) + 0.6, rows=len(ratios), height_ratios=ratios,
                           hspace=0.35 if aligned else 0.65)
    axes = list(np.atleast_1d(axes))
    timed = axes[: len(axes) if aligned else 2]
    for ax in timed[1:]:
        ax.sharex(axes[0])
    axes[0].plot(np.arange(len(wave)) / rate, wave, linewidth=0.5, color="#1f5fa8")
    axes[0].set_xlim(0, seconds)
    axes[0].set_ylabel("amplitude")
    axes[0].set_title(title + (f"  (first {MAX_SECONDS:.0f} s)" if cut else ""), fontsize=10, loc="left")
    db = log_mel(wave, rate)
    axes[1].imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, db.shape[0]),
                   vmin=db.max() - 80, vmax=db.max())
    axes[1].set_ylabel("mel band")
    timed[-1].set_xlabel("time (s)")
    return fig, axes, seconds


def draw_alignment(ax: Any, segments: Sequence[Sequence[Any]], seconds: float) -> None:
    """CTC alignment under the spectrogram: each [start_s, end_s, character] a shaded span with its
    character in the middle; word gaps ("|") as thin grey lines."""
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("CTC", rotation=0, ha="right", va="center")
    if not segments:
        ax.text(seconds / 2, 0.5, "every frame is blank (no characters)", ha="center", va="center", fontsize=9)
        return
    for k, (start, end, char) in enumerate(segments):
        if char in ("|", " "):
            ax.axvline((start + end) / 2, color="#999999", linewidth=0.8)
            continue
        ax.axvspan(start, end, color="#1f5fa8" if k % 2 else "#5aa0d8", alpha=0.35, linewidth=0)
        ax.text((start + end) / 2, 0.35 + 0.3 * (k % 2), char, ha="center", va="center", fontsize=9, family="monospace")


def draw_codes(ax: Any, codes: np.ndarray, frame_seconds: float, num_vars: int) -> None:
    """Code ids [F, G] as a (groups x frames) image in the W&B media's colours (hue = code id)."""
    from headstart.viz.codebook import codes_image

    frames, groups = codes.shape
    image = codes_image(codes, np.zeros(frames, dtype=bool), num_vars, scale=1)[:groups]  # drop the mask row
    ax.imshow(image, aspect="auto", interpolation="nearest", extent=(0, frames * frame_seconds, groups - 0.5, -0.5))
    ax.set_yticks(range(groups), [f"group {g}" for g in range(groups)])
    ax.set_title(f"code id per {frame_seconds * 1000:.0f} ms frame (hue = id of {num_vars})", fontsize=9, loc="left")


def audio_classification_png(path: Path, clip: str, labels: Sequence[str], scores: Sequence[float]) -> Path:
    """Waveform + log-mel of ``clip`` above a bar chart of its top-k classes."""
    from headstart.viz.figure import save_figure, top_k_bars

    top = f"{labels[0]} ({scores[0]:.2f})" if labels else "no label"
    fig, axes, _ = audio_figure(clip, f"{Path(clip).name}: {top}", [0.45 * max(2, len(labels))], aligned=False)
    top_k_bars(axes[2], labels, scores, f"top-{len(labels)} classes")
    return save_figure(fig, path)


def transcript_png(path: Path, clip: str, transcript: str, segments: Sequence[Sequence[Any]]) -> Path:
    """Waveform + log-mel of ``clip``, the CTC characters at their frames under it, the transcript as title."""
    from headstart.viz.figure import save_figure, wrap

    fig, axes, seconds = audio_figure(clip, f"{Path(clip).name}: \"{wrap(transcript, 100, 3)}\"", [0.6])
    draw_alignment(axes[2], segments, seconds)
    return save_figure(fig, path)


def codes_png(path: Path, clip: str, codes: Sequence[Sequence[int]], frame_seconds: float, num_vars: int) -> Path:
    """Waveform + log-mel of ``clip`` above its quantizer code ids per frame and group."""
    from headstart.viz.figure import save_figure

    array = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    fig, axes, _ = audio_figure(clip, f"{Path(clip).name}: {len(array)} frames of codes", [0.3 + 0.3 * array.shape[1]])
    draw_codes(axes[2], array, frame_seconds, num_vars)
    return save_figure(fig, path)
