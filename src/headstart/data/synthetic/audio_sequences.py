"""Structured tone sequences for wav2vec2 pretraining: a small "phone" inventory and a grammar.

An utterance is a chain of tone phones (phone k: one of the pitch/contour units of
``synthetic.audio.letter_unit``), 60-100 ms each, joined without gaps. The next phone follows a
sparse Markov grammar (phone k -> k+1 with probability ``p_next``, else k+3, mod the inventory), so
the latent of a masked stretch is predictable from the phones around it: what the contrastive
objective learns. Per utterance: a speaker pitch shift (x0.92-1.08), a speaking rate, loudness and
background noise. Raw float32 waveforms at 16 kHz, deterministic by seed.
"""

from __future__ import annotations

import string

import numpy as np

from headstart.data.synthetic.audio import SAMPLE_RATE, letter_unit


def phone_sequence(rng: np.random.Generator, length: int, num_phones: int, p_next: float) -> list[int]:
    """``length`` phone ids in [0, num_phones) following the grammar (k -> k+1, else k+3)."""
    phones = [int(rng.integers(num_phones))]
    for _ in range(length - 1):
        step = 1 if rng.random() < p_next else 3
        phones.append((phones[-1] + step) % num_phones)
    return phones


def make_tone_sequences(
    n: int,
    seed: int,
    num_phones: int = 8,
    min_seconds: float = 1.0,
    max_seconds: float = 1.5,
    p_next: float = 0.8,
    noise_level: float = 0.02,
    sample_rate: int = SAMPLE_RATE,
) -> list[dict]:
    """n examples {"waveform": [T] float32, "text": "a b c ..." (the phones, for inspection)}."""
    if not 2 <= num_phones <= 26:
        raise ValueError(f"num_phones must be in [2, 26], got {num_phones}")
    # spread the inventory over the 27 pitch x contour units so neighbours are easy to tell apart
    letters = [string.ascii_lowercase[(k * 26) // num_phones] for k in range(num_phones)]
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        target = int(rng.uniform(min_seconds, max_seconds) * sample_rate)
        shift, rate = rng.uniform(0.92, 1.08), rng.uniform(0.06, 0.1)
        phones = phone_sequence(rng, int(target / (rate * sample_rate)) + 2, num_phones, p_next)
        pieces, total = [], 0
        for phone in phones:
            unit = letter_unit(letters[phone], shift, rate * rng.uniform(0.9, 1.1), sample_rate)
            pieces.append(unit * rng.uniform(0.7, 1.0))
            total += len(unit)
            if total >= target:
                break
        wave = np.concatenate(pieces)[:target] * rng.uniform(0.3, 1.0)
        wave = wave + noise_level * rng.standard_normal(len(wave))
        examples.append({"waveform": wave.astype(np.float32), "text": " ".join(letters[p] for p in phones[: len(pieces)])})
    return examples
