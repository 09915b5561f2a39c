"""Unlabelled audio for wav2vec2 pretraining: clips -> (crop) -> normalise -> padded batches.

Sources (``data.source``): ``synthetic`` (structured tone sequences, learnable: see
synthetic/audio_sequences.py), ``folder`` (every audio file under ``data.path``, recursively; a
``train/`` + ``val/`` layout is used when present, else ``val_fraction`` is held out), ``manifest``
(.jsonl/.csv/.tsv with a path column relative to the manifest and an optional duration; no
labels), ``hf`` (a hub name or ``save_to_disk`` directory with an audio column; only that column
is read). Clips longer than ``max_seconds`` are cropped (random window in training, the first
window in evaluation); clips shorter than the model's receptive field (400 samples = 25 ms for
wav2vec2) or unreadable files are bad input: a DataError naming the file and row, or a counted
skip under ``on_error=skip``. Batches: ``waveforms`` [B, T], ``lengths`` [B], ``paths``, ``_skipped``;
length-grouped like the other audio tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from headstart.data.audio import AudioDataModule
from headstart.data.audio_batches import AudioDataset, DecodedClips
from headstart.data.errors import DataError, split_skipped
from headstart.data.sources.audio import AUDIO_EXTENSIONS, AudioItem, Splits, synthetic_splits
from headstart.data.splits import require_hf_name
from headstart.data.synthetic.audio_sequences import make_tone_sequences


class PretrainingAudioDataset(AudioDataset):
    """Unlabelled clips; ``crop`` samples at most (random window when ``random_crop``, else the first)."""

    def __init__(self, items: list[AudioItem], sample_rate: int, limits: tuple[int, int | None], on_error: Any,
                 crop: int | None, random_crop: bool, normalize: bool = True, cache: DecodedClips | None = None,
                 split: str = "") -> None:  # fmt: skip
        super().__init__(items, [None] * len(items), sample_rate, limits, on_error, crop=crop, normalize=normalize,
                         cache=cache, split=split)
        self.random_crop = random_crop

    def _checked(self, wave: np.ndarray, where: str) -> np.ndarray:
        low, high = self.limits
        if len(wave) < low:
            raise DataError(
                f"{where}: clip is {len(wave)} samples ({len(wave) / self.sample_rate:.4f} s), shorter than "
                f"{low} samples (the model's receptive field, or data.min_duration): no frame to learn from"
            )
        if high is not None and len(wave) > high:
            raise DataError(f"{where}: clip is {len(wave) / self.sample_rate:.2f} s, over data.max_duration")
        return wave

    def _load(self, i: int) -> dict[str, Any]:
        return {"waveform": self._finish(self._cropped(self.decoded(i))), "where": self.items[i].where}


def collate_unlabelled(samples: list[Any]) -> dict[str, Any]:
    """Pad clips to the longest of the batch -> waveforms [B, T], lengths [B], paths, _skipped."""
    kept, skipped = split_skipped(samples)
    waves = [torch.from_numpy(np.ascontiguousarray(s["waveform"])) for s in kept]
    return {
        "waveforms": pad_sequence(waves, batch_first=True) if waves else torch.zeros(0, 1),
        "lengths": torch.tensor([len(w) for w in waves], dtype=torch.long),
        "paths": [s["where"] for s in kept],
        "_skipped": skipped,
    }


def audio_tree(root: Path) -> list[AudioItem]:
    """Every audio file under ``root`` (recursively), no targets."""
    if not root.is_dir():
        raise DataError(f"{root}: audio folder not found")
    items = [AudioItem(str(p), str(p)) for p in sorted(root.rglob("*")) if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    if not items:
        raise DataError(f"{root}: no audio files (extensions {', '.join(AUDIO_EXTENSIONS)})")
    return items


def hf_audio_splits(name: str, subset: str | None, splits: dict[str, str | None], audio_column: str,
                    val_fraction: float, seed: int) -> Splits:  # fmt: skip
    """A `datasets` set -> items reading only ``audio_column`` (undecoded; soundfile decodes)."""
    import datasets

    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    out: Splits = {}
    for split, table in tables.items():
        if audio_column not in table.features:
            raise DataError(f"{name}[{split}]: no column '{audio_column}' (columns: {list(table.features)})")
        table = table.select_columns([audio_column])
        if isinstance(table.features[audio_column], datasets.Audio):
            table = table.cast_column(audio_column, datasets.Audio(decode=False))
        out[split] = [AudioItem(f"{name}[{split}] row {i}", lambda i=i, t=table: t[i][audio_column]) for i in range(len(table))]
    return out


class AudioPretrainingDataModule(AudioDataModule):
    """See the module docstring. max_seconds: crop length (null: whole clips). synthetic_*: the
    tone-sequence generator's inventory size, grammar strength and utterance lengths."""

    task_name = "audio pretraining"  # named in data errors

    def __init__(
        self,
        max_seconds: float | None = 15.0,
        synthetic_num_phones: int = 8,
        synthetic_p_next: float = 0.8,
        synthetic_min_seconds: float = 1.0,
        synthetic_max_seconds: float = 1.5,
        **common: Any,
    ) -> None:
        common.setdefault("target_column", common.get("path_column", "path"))  # manifests: no label column
        super().__init__(**common)
        self.max_seconds = max_seconds
        self.synthetic = {"num_phones": synthetic_num_phones, "p_next": synthetic_p_next,
                          "min_seconds": synthetic_min_seconds, "max_seconds": synthetic_max_seconds}  # fmt: skip
        self.collate = collate_unlabelled

    def _synthetic(self) -> Splits:
        return synthetic_splits(partial(make_tone_sequences, **self.synthetic), self.synthetic_sizes, self.seed, "text")

    def _folder_listing(self) -> Callable[[Path], list[AudioItem]]:
        return audio_tree

    def _readers(self) -> dict[str, Callable[[], Splits]]:
        """The hub reader takes only the audio column: pretraining reads no targets."""
        return {**super()._readers(), "hf": lambda: hf_audio_splits(
            require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["splits"], self.columns["audio_column"],
            self.val_fraction, self.seed)}

    def _targets(self, split: str, items: list[AudioItem]) -> list[Any]:
        return [None] * len(items)

    def _dataset(self, split: str, train: bool) -> PretrainingAudioDataset:
        crop = int(self.max_seconds * self.sample_rate) if self.max_seconds else None
        return PretrainingAudioDataset(
            self.splits[split], self.sample_rate, self._sample_limits(), self.on_error, crop=crop, random_crop=train,
            normalize=bool(self.spec.get("normalize", True)), cache=self.decoded_clips, split=split,
        )  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {}
