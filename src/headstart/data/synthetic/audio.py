"""Learnable synthetic audio at 16 kHz, deterministic by seed.

Two generators, both returning raw (un-normalised) float32 waveforms; the audio pipeline
normalises them exactly as it does decoded files (``audio_io.zero_mean_unit_var``):

- :func:`make_audio_classification`: each class is a sound *pattern* (steady tone, rising
  chirp, ...) drawn with random pitch, duration, loudness and background noise, so a model
  must learn the shape, not one frequency.
- :func:`make_spelled_words`: words "spelled" letter by letter, each letter a distinct
  ~70 ms tone unit (one of 9 pitches x 3 contours), with per-utterance speaker variation
  (pitch shift, speaking rate). Letters are separated by short gaps (so repeated letters
  are separable, as CTC needs a blank between repeats) and words by longer silences.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence

import numpy as np

SAMPLE_RATE = 16000
CLASS_NAMES = ("tone", "rising_chirp", "falling_chirp", "two_tone", "am_tone", "band_noise", "vibrato", "pulses")
LEXICON = (
    "cat", "dog", "sun", "red", "blue", "tree", "fish", "bird", "home", "star",
    "moon", "green", "car", "bus", "hat", "cup", "map", "pen", "box", "egg",
)  # fmt: skip
# 9 pitches a factor 1.3 apart: a +-8% speaker shift never moves one onto its neighbour.
_UNIT_PITCHES = tuple(300.0 * 1.3**k for k in range(9))
_UNIT_CONTOURS = (1.0, 1.25, 0.8)  # end/start frequency ratio: steady, rising, falling

Rng = np.random.Generator


def _phase(freq: np.ndarray, rate: int) -> np.ndarray:
    """freq: [T] instantaneous frequency in Hz -> [T] phase (radians)."""
    return 2 * np.pi * np.cumsum(freq) / rate


def _sweep(f0: float, f1: float, n: int, rate: int) -> np.ndarray:
    """Exponential sweep f0 -> f1 over n samples -> [n] sine."""
    return np.sin(_phase(f0 * (f1 / f0) ** np.linspace(0, 1, n), rate))


def _band_noise(rng: Rng, n: int, low: float, high: float, rate: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n)
    return out / (np.abs(out).max() + 1e-8)


def _pattern(name: str, rng: Rng, n: int, rate: int) -> np.ndarray:
    """One class pattern of n samples, peak amplitude about 1."""
    t = np.arange(n) / rate
    f = rng.uniform(300.0, 2000.0)
    if name == "tone":
        return np.sin(2 * np.pi * f * t)
    if name in ("rising_chirp", "falling_chirp"):
        # a steep sweep (x4-6, centred on f, 120-4900 Hz): the direction shows within a
        # few frames, so a small model tells rising from falling on short clips
        half = np.sqrt(rng.uniform(4.0, 6.0))
        low, high = f / half, f * half
        return _sweep(low, high, n, rate) if name == "rising_chirp" else _sweep(high, low, n, rate)
    if name == "two_tone":
        return 0.5 * (np.sin(2 * np.pi * f * t) + np.sin(2 * np.pi * f * rng.uniform(1.4, 1.8) * t))
    if name == "am_tone":
        return np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4.0, 8.0) * t))
    if name == "band_noise":
        return _band_noise(rng, n, f, f * 1.5, rate)
    if name == "vibrato":
        wobble = f * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(5.0, 9.0) * t))
        return np.sin(_phase(wobble, rate))
    if name == "pulses":
        gate = (np.sin(2 * np.pi * rng.uniform(8.0, 12.0) * t) > 0.3).astype(np.float64)
        return np.sin(2 * np.pi * f * t) * gate
    raise ValueError(f"unknown pattern {name!r}; expected one of {CLASS_NAMES}")


def _fade(x: np.ndarray, rate: int, ms: float = 5.0) -> np.ndarray:
    """Short raised-cosine fade in/out so units do not click (clicks would leak class cues)."""
    k = min(int(rate * ms / 1000), len(x) // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        x = x.copy()
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def make_audio_classification(
    n: int,
    seed: int,
    num_classes: int = 6,
    sample_rate: int = SAMPLE_RATE,
    min_duration: float = 0.5,
    max_duration: float = 1.0,
    noise_level: float = 0.05,
) -> list[dict]:
    """n examples {"waveform": [T] float32, "label": int}; labels cycle so classes balance.

    Class k is the pattern ``CLASS_NAMES[k]``; ``num_classes`` is at most len(CLASS_NAMES).
    """
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        label = i % num_classes
        length = int(rng.uniform(min_duration, max_duration) * sample_rate)
        sound = _fade(_pattern(CLASS_NAMES[label], rng, length, sample_rate), sample_rate)
        wave = rng.uniform(0.3, 1.0) * sound + noise_level * rng.standard_normal(length)
        examples.append({"waveform": wave.astype(np.float32), "label": label})
    return examples


def letter_unit(letter: str, pitch_shift: float, duration: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The tone unit of one lowercase letter: [duration * sample_rate] float64.

    Letter k uses pitch ``k % 9`` and contour ``k // 9`` (26 letters, 27 slots).
    """
    k = string.ascii_lowercase.index(letter)
    f0 = _UNIT_PITCHES[k % len(_UNIT_PITCHES)] * pitch_shift
    n = int(duration * sample_rate)
    return _fade(_sweep(f0, f0 * _UNIT_CONTOURS[k // len(_UNIT_PITCHES)], n, sample_rate), sample_rate)


def _speak(words: Sequence[str], rng: Rng, rate: int, unit: Callable[[str, float], np.ndarray]) -> np.ndarray:
    """Concatenate letter units, gaps and word silences for one utterance -> [T]."""
    pieces = [np.zeros(int(rng.uniform(0.05, 0.1) * rate))]
    speed = rng.uniform(0.86, 1.14)  # 70 ms units become 60-80 ms
    for w, word in enumerate(words):
        if w > 0:
            pieces.append(np.zeros(int(rng.uniform(0.10, 0.15) * speed * rate)))
        for letter in word:
            pieces.append(unit(letter, speed) * rng.uniform(0.6, 1.0))
            pieces.append(np.zeros(int(0.015 * speed * rate)))
    pieces.append(np.zeros(int(rng.uniform(0.05, 0.1) * rate)))
    return np.concatenate(pieces)


def make_spelled_words(
    n: int,
    seed: int,
    lexicon: Sequence[str] = LEXICON,
    min_words: int = 1,
    max_words: int = 3,
    sample_rate: int = SAMPLE_RATE,
    noise_level: float = 0.03,
) -> list[dict]:
    """n examples {"waveform": [T] float32, "text": "cat dog"} of spelled-out words.

    Each utterance has its own speaker: pitch shift in [0.92, 1.08] and speaking rate giving
    letter units of 60-80 ms. Words are lowercase a-z only.
    """
    bad = sorted({c for word in lexicon for c in word} - set(string.ascii_lowercase))
    if bad:
        raise ValueError(f"lexicon words must be lowercase a-z; found {bad}")
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        words = [lexicon[j] for j in rng.integers(0, len(lexicon), rng.integers(min_words, max_words + 1))]
        shift = rng.uniform(0.92, 1.08)

        def unit(letter: str, speed: float, shift: float = shift) -> np.ndarray:
            return letter_unit(letter, shift, 0.07 * speed, sample_rate)

        wave = _speak(words, rng, sample_rate, unit)
        wave = wave + noise_level * rng.standard_normal(len(wave))
        examples.append({"waveform": wave.astype(np.float32), "text": " ".join(words)})
    return examples
