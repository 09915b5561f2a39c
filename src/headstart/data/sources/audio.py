"""Where labelled audio comes from: synthetic, class folders, manifests, or a `datasets` set.

Every source yields ``AudioItem`` lists per split ("train", "val", "test"). An item knows
where it came from (the file, ``file:line``, or ``dataset[split] row i``) for error
messages, how to get its audio, its duration when known without decoding, and its target
(a class name or a transcript). Problems found while listing are raised as DataError
naming the item, or, under ``on_error=skip``, kept in ``item.error`` so the loader turns the
item into a counted skip.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from headstart.data.audio_io import AudioFileError, _check_wav_complete, audio_duration, load_audio
from headstart.data.errors import DataError, OnError, Skipped
from headstart.data.sources.text import read_records, require_columns
from headstart.data.splits import explicit_paths, split_folders

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".w64", ".rf64", ".caf")
Splits = dict[str, list["AudioItem"]]


@dataclass
class AudioItem:
    """One clip. source: a file path, a waveform [T] at the target rate (synthetic), or a
    callable returning a path, encoded bytes, or {"array", "sampling_rate"} (datasets rows)."""

    where: str
    source: str | np.ndarray | Callable[[], Any]
    target: Any = None
    duration: float | None = None
    error: str | None = None


def decode(item: AudioItem, sample_rate: int) -> np.ndarray:
    """The item's audio as [T] float32 mono at ``sample_rate``, not yet normalised."""
    source = item.source() if callable(item.source) else item.source
    if isinstance(source, np.ndarray):
        return source.astype(np.float32, copy=False)
    if isinstance(source, dict):
        if source.get("array") is not None:
            from headstart.data.audio_io import resample, to_mono

            array = np.asarray(source["array"], dtype=np.float32)
            return resample(to_mono(array.T if array.ndim == 2 else array), int(source["sampling_rate"]), sample_rate)
        source = source.get("bytes") or source.get("path")
    if source is None:
        raise DataError(f"{item.where}: no audio (empty audio cell)")
    return load_audio(source, sample_rate, normalize=False, name=item.where)


def probe_duration(item: AudioItem) -> float:
    """Seconds, from the header only (files and encoded bytes); raises AudioFileError naming the item."""
    source = item.source() if callable(item.source) else item.source
    if isinstance(source, dict):
        if source.get("array") is not None:
            return len(source["array"]) / float(source["sampling_rate"])
        source = source.get("bytes") or source.get("path")
    if isinstance(source, bytes):
        if not source:
            raise AudioFileError(f"{item.where}: file is empty (0 bytes)")
        try:
            info = sf.info(io.BytesIO(source))
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioFileError(f"{item.where}: unsupported or unrecognised audio format ({err})") from err
        return info.frames / info.samplerate
    if source is None:
        raise AudioFileError(f"{item.where}: no audio (empty audio cell)")
    if not Path(source).is_file():
        raise AudioFileError(f"{item.where}: audio file not found: {source}")
    duration = audio_duration(source)
    _check_complete_wav(Path(source))
    return duration


def _check_complete_wav(path: Path) -> None:
    """A WAV whose data chunk announces more bytes than the file holds is truncated (named)."""
    with path.open("rb") as handle:
        head = handle.read(12)
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            _check_wav_complete(handle, path.stat().st_size, str(path))


# ---- synthetic ----------------------------------------------------------------------------------
def synthetic_splits(make: Callable[[int, int], list[dict]], sizes: dict[str, int], seed: int, key: str) -> Splits:
    """Disjoint splits made by ``make(n, seed)`` (each split its own seed); ``key``: label or text."""
    splits: Splits = {}
    for offset, (split, n) in enumerate(sizes.items()):
        examples = make(int(n), seed * 1000 + offset)
        splits[split] = [
            AudioItem(f"synthetic[{split}] row {i}", ex["waveform"], ex[key], len(ex["waveform"]) / 16000.0)
            for i, ex in enumerate(examples)
        ]
    return splits


# ---- class folders and transcript folders --------------------------------------------------------
def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def class_folder(root: Path) -> list[AudioItem]:
    """``root/<class>/**/<audio>`` -> items whose target is the class folder name."""
    if not root.is_dir():
        raise DataError(f"{root}: audio folder not found (expected <class>/<audio file> subfolders)")
    items = [
        AudioItem(str(path), str(path), class_dir.name)
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in _audio_files(class_dir)
    ]
    if not items:
        raise DataError(f"{root}: no audio files in <class>/ subfolders (extensions {', '.join(AUDIO_EXTENSIONS)})")
    return items


def transcript_folder(root: Path) -> list[AudioItem]:
    """``root/**/<name>.<audio>`` each with ``<name>.txt`` beside it holding the transcript."""
    if not root.is_dir():
        raise DataError(f"{root}: audio folder not found (expected audio files with .txt transcripts beside them)")
    items = []
    for path in _audio_files(root):
        text_file = path.with_suffix(".txt")
        if not text_file.is_file():
            items.append(AudioItem(str(path), str(path), None, error=f"{path}: no transcript file {text_file.name}"))
            continue
        items.append(AudioItem(str(path), str(path), text_file.read_text(encoding="utf-8").strip()))
    if not items:
        raise DataError(f"{root}: no audio files (extensions {', '.join(AUDIO_EXTENSIONS)})")
    return items


def folder_splits(paths: dict[str, str | None], listing: Callable[[Path], list[AudioItem]]) -> dict[str, list[AudioItem]]:
    """``paths["path"]`` holding train/ val|validation/ [test/] or one tree (split later by fraction),
    or explicit ``train_path`` / ``val_path`` / ``test_path``."""
    chosen = split_folders(paths.get("path"), paths.get("train_path"), paths.get("val_path"), paths.get("test_path"))
    return {split: listing(Path(path)) for split, path in chosen.items() if path is not None}


# ---- manifests ------------------------------------------------------------------------------------
def manifest_items(
    path: str, audio_column: str, target_column: str, duration_column: str | None, on_error: OnError
) -> list[AudioItem]:
    """JSONL or CSV/TSV rows with an audio path (relative to the manifest), a target and an
    optional duration in seconds; a bad row is an error naming ``file:line``."""
    base = Path(path).parent
    items = []
    for where, record in read_records(path, on_error):
        if isinstance(record, Skipped):
            items.append(AudioItem(where, "", error=str(record)))
            continue
        try:
            require_columns(where, record, [audio_column, target_column])
            duration = record.get(duration_column) if duration_column else None
            duration = float(duration) if duration not in (None, "") else None
        except (DataError, ValueError) as err:
            if on_error == "raise":
                raise DataError(str(err) if isinstance(err, DataError) else f"{where}: bad duration ({err})") from err
            items.append(AudioItem(where, "", error=str(err)))
            continue
        audio = Path(str(record[audio_column]))
        audio = audio if audio.is_absolute() else base / audio
        items.append(AudioItem(f"{where} ({audio})", str(audio), str(record[target_column]).strip(), duration))
    if not items:
        raise DataError(f"{path}: manifest has no rows")
    return items


def manifest_splits(paths: dict[str, str | None], **columns: Any) -> dict[str, list[AudioItem]]:
    chosen = {"train": paths.get("path"), **explicit_paths(paths.get("train_path"), paths.get("val_path"), paths.get("test_path"))}
    if chosen["train"] is None:
        raise DataError("data.source=manifest needs data.path or data.train_path (a .jsonl/.csv/.tsv file)")
    return {split: manifest_items(p, **columns) for split, p in chosen.items() if p is not None}


# ---- Hugging Face datasets ----------------------------------------------------------------------
def hf_splits(
    name: str, subset: str | None, splits: dict[str, str | None], audio_column: str, target_column: str,
    val_fraction: float, seed: int,
) -> tuple[list[str] | None, dict[str, list[AudioItem]]]:
    """A hub name or ``save_to_disk`` dir -> (class names of a ClassLabel target or None, splits).

    Audio is read undecoded (``Audio(decode=False)``: datasets' decoder needs torchcodec) and
    decoded here with soundfile.
    """
    import datasets

    from headstart.data.sources.hf import load_hf_splits

    tables = load_hf_splits(name, subset, splits, val_fraction, seed)
    features = tables["train"].features
    for column in (audio_column, target_column):
        if column not in features:
            raise DataError(f"{name}: no column '{column}' (columns: {list(features)})")
    names = list(features[target_column].names) if hasattr(features[target_column], "names") else None
    out: dict[str, list[AudioItem]] = {}
    for split, table in tables.items():
        if isinstance(table.features[audio_column], datasets.Audio):
            table = table.cast_column(audio_column, datasets.Audio(decode=False))
        targets = table[target_column]
        out[split] = [
            AudioItem(
                f"{name}[{split}] row {i}",
                lambda i=i, t=table: t[i][audio_column],
                names[target] if names is not None else (str(target).strip() if target is not None else ""),
            )
            for i, target in enumerate(targets)
        ]
    return names, out
