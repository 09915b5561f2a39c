"""Audio examples and batches: decode -> duration check -> (crop) -> normalise -> pad.

Batches carry ``waveforms`` [B, T] float (zero-padded), ``lengths`` [B] valid samples
(the model's attention mask comes from them), ``paths`` [B] and ``_skipped``; plus
``labels`` [B] (classification) or ``labels`` [B, S] / ``label_lengths`` [B] / ``texts``
(CTC). Prediction batches hold every chunk of every file in the batch: ``owners`` [N]
maps chunk -> file, so a task joins the chunks of a file back into one record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from headstart.data.audio_io import zero_mean_unit_var
from headstart.data.errors import DataError, OnError, load_example, split_skipped
from headstart.data.sources.audio import AudioItem, decode

Kind = Literal["classification", "ctc"]


class DecodedClips:
    """Decoded clips kept in memory, first come first kept, up to ``budget`` bytes (the splits of
    one datamodule share one budget: keys are (split, index)).

    Decoding a clip (reading the file, mixing, resampling) costs far more than the rest of an
    example (FSDD: 0.82 of 0.95 s per epoch over 2,400 clips), and it gives the same array every
    epoch; with the clips kept, every epoch after the first reads no file. A clip that does not
    fit the budget is decoded each time it is read, as without a cache. The arrays are shared
    with the examples handed out: callers must not write into them.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.used = max(0, int(budget)), 0
        self.clips: dict[Hashable, np.ndarray] = {}

    def get(self, key: Hashable, decode: Callable[[], np.ndarray]) -> np.ndarray:
        wave = self.clips.get(key)
        if wave is None:
            wave = decode()
            if self.used + wave.nbytes <= self.budget:
                self.clips[key] = wave
                self.used += wave.nbytes
        return wave


class AudioDataset(Dataset):
    """Decoded clips of one split.

    targets: per item, a class id (classification) or (label ids, normalised text) (CTC).
    limits: (min, max) samples a decoded clip may have; outside is a DataError naming it.
    crop: training crop length in samples (random window; None keeps the whole clip).
    cache: where decoded clips (before crop and normalisation) are kept, under (``split``, index)
    (:class:`DecodedClips`; None: decode at every read).
    """

    def __init__(
        self, items: list[AudioItem], targets: list[Any], sample_rate: int, limits: tuple[int, int | None],
        on_error: OnError, crop: int | None = None, normalize: bool = True, cache: DecodedClips | None = None,
        split: str = "",
    ) -> None:  # fmt: skip
        self.items, self.targets = items, targets
        self.sample_rate, self.limits, self.on_error = sample_rate, limits, on_error
        self.crop, self.normalize = crop, normalize
        self.cache, self.split = cache or DecodedClips(0), split

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        """Samples per example as fed to the model (for length-grouped batches)."""
        out = [int((item.duration or 0.0) * self.sample_rate) for item in self.items]
        return [min(n, self.crop) for n in out] if self.crop else out

    def __getitem__(self, i: int) -> Any:
        return load_example(lambda: self._load(i), self.items[i].where, self.on_error)

    def decoded(self, i: int) -> np.ndarray:
        """Item ``i`` as [T] float32 at ``sample_rate`` (from the cache when kept there); a bad
        item raises its DataError and is not kept."""
        item = self.items[i]
        if item.error is not None:
            raise DataError(item.error)
        return self.cache.get((self.split, i), lambda: self._checked(decode(item, self.sample_rate), item.where))

    def _checked(self, wave: np.ndarray, where: str) -> np.ndarray:
        return check_length(wave, self.limits, self.sample_rate, where)

    def _finish(self, wave: np.ndarray) -> np.ndarray:
        """Normalised, or a copy (the decoded array may be the cache's)."""
        return zero_mean_unit_var(wave) if self.normalize else np.array(wave, dtype=np.float32)

    random_crop = True  # crop a random window (False: the first ``crop`` samples)

    def _cropped(self, wave: np.ndarray) -> np.ndarray:
        if self.crop is None or len(wave) <= self.crop:
            return wave
        start = int(torch.randint(0, len(wave) - self.crop + 1, ()).item()) if self.random_crop else 0
        return wave[start : start + self.crop]

    def _load(self, i: int) -> dict[str, Any]:
        item, target = self.items[i], self.targets[i]
        sample: dict[str, Any] = {"waveform": self._finish(self._cropped(self.decoded(i))), "where": item.where}
        if isinstance(target, tuple):
            sample["label_ids"], sample["text"] = target
        else:
            sample["labels"] = target
        return sample


def check_length(wave: np.ndarray, limits: tuple[int, int | None], sample_rate: int, where: str) -> np.ndarray:
    low, high = limits
    if len(wave) < low or (high is not None and len(wave) > high):
        bound = f"{low / sample_rate:g} s" + (f" - {high / sample_rate:g} s" if high is not None else " or more")
        raise DataError(
            f"{where}: clip is {len(wave) / sample_rate:.2f} s, outside the allowed {bound} "
            "(data.min_duration / data.max_duration)"
        )
    return wave


def collate_audio(samples: list[Any], kind: Kind) -> dict[str, Any]:
    """Pad clips to the longest in the batch; see the module docstring for the keys."""
    kept, skipped = split_skipped(samples)
    waves = [torch.from_numpy(np.ascontiguousarray(s["waveform"])) for s in kept]
    batch: dict[str, Any] = {
        "waveforms": pad_sequence(waves, batch_first=True) if waves else torch.zeros(0, 1),
        "lengths": torch.tensor([len(w) for w in waves], dtype=torch.long),
        "paths": [s["where"] for s in kept],
        "_skipped": skipped,
    }
    if kind == "classification":
        batch["labels"] = torch.tensor([s["labels"] for s in kept], dtype=torch.long)
    else:
        ids = [torch.tensor(s["label_ids"], dtype=torch.long) for s in kept]
        batch["labels"] = pad_sequence(ids, batch_first=True) if ids else torch.zeros(0, 1, dtype=torch.long)
        batch["label_lengths"] = torch.tensor([len(x) for x in ids], dtype=torch.long)
        batch["texts"] = [s["text"] for s in kept]
    return batch


class PredictAudioDataset(Dataset):
    """Audio files for predict.py: whole files, decoded and resampled (not yet chunked)."""

    def __init__(self, paths: Sequence[str], sample_rate: int, on_error: OnError) -> None:
        self.paths, self.sample_rate, self.on_error = list(paths), sample_rate, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        path = self.paths[i]
        item = AudioItem(path, path)
        return load_example(lambda: {"waveform": decode(item, self.sample_rate), "where": path}, path, self.on_error)


def chunk(wave: np.ndarray, size: int, min_last: int) -> list[np.ndarray]:
    """wave [T] -> pieces of ``size`` samples; a last piece shorter than ``min_last`` joins the one before."""
    pieces = [wave[i : i + size] for i in range(0, len(wave), size)]
    if len(pieces) > 1 and len(pieces[-1]) < min_last:
        pieces[-2:] = [np.concatenate(pieces[-2:])]
    return pieces


def collate_chunks(samples: list[Any], chunk_samples: int, min_samples: int, normalize: bool = True) -> dict[str, Any]:
    """Files -> chunks of at most ``chunk_samples`` (each normalised on its own), padded.

    Returns waveforms [N, T], lengths [N], owners [N] (file index in ``paths``), paths [B].
    """
    kept, skipped = split_skipped(samples)
    pieces, owners = [], []
    for owner, sample in enumerate(kept):
        wave = sample["waveform"]
        if len(wave) < min_samples:  # shorter than one model frame: pad with silence
            wave = np.pad(wave, (0, min_samples - len(wave)))
        for piece in chunk(wave, chunk_samples, max(min_samples, chunk_samples // 4)):
            pieces.append(torch.from_numpy(zero_mean_unit_var(piece) if normalize else piece))
            owners.append(owner)
    return {
        "waveforms": pad_sequence(pieces, batch_first=True) if pieces else torch.zeros(0, 1),
        "lengths": torch.tensor([len(p) for p in pieces], dtype=torch.long),
        "owners": torch.tensor(owners, dtype=torch.long),
        "paths": [s["where"] for s in kept],
        "_skipped": skipped,
    }
