"""Audio decoding, CTC character vocabulary and synthetic audio generators."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers

from headstart.data.audio_io import (
    AudioFileError,
    EmptyAudioError,
    TruncatedAudioError,
    UnsupportedAudioFormatError,
    audio_duration,
    load_audio,
    read_audio,
    zero_mean_unit_var,
)
from headstart.data.ctc_vocab import CtcVocab, UnknownCharacterError
from headstart.data.synthetic.audio import CLASS_NAMES, letter_unit, make_audio_classification, make_spelled_words


def _write_wav(path: Path, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1
    audio = np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)
    sf.write(path, audio, rate, subtype="PCM_16")
    return audio


# ---------------------------------------------------------------- audio_io


def test_load_audio_mixes_resamples_and_normalises(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    _write_wav(path, 0.5, 8000, channels=2)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 8000  # 0.5 s at 16 kHz
    assert abs(wave.mean()) < 1e-4 and abs(wave.std() - 1) < 1e-3
    raw = load_audio(path, normalize=False)
    assert raw.mean() > 0.05  # the DC offset survives without normalisation
    assert audio_duration(path) == pytest.approx(0.5)


@pytest.mark.parametrize("rates", [(8000, 16000), (44100, 16000), (22050, 16000)])
def test_resample_with_a_cached_kernel_equals_torchaudios_function(rates: tuple[int, int]) -> None:
    """Bit for bit, for several clips of one rate pair (the kernel is built once and reused)."""
    import torchaudio.functional

    from headstart.data.audio_io import resample

    rng = np.random.default_rng(0)
    for length in (1000, 4321, 8000):
        wave = rng.standard_normal(length).astype(np.float32)
        expected = torchaudio.functional.resample(torch.from_numpy(wave), *rates).numpy()
        assert np.array_equal(resample(wave, *rates), expected)


def test_normalisation_matches_transformers_feature_extractor() -> None:
    wave = np.random.default_rng(0).standard_normal(3000).astype(np.float32) * 0.2 + 0.3
    ref = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)(wave, sampling_rate=16000).input_values[0]
    assert np.allclose(zero_mean_unit_var(wave), ref, atol=1e-5)


def test_bytes_source_decodes_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    _write_wav(path, 0.2, 16000)
    assert np.array_equal(load_audio(path.read_bytes(), name="a.wav"), load_audio(path))


def test_zero_byte_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        load_audio(path)
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        audio_duration(path)


def test_truncated_wav_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    _write_wav(path, 1.0, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # libsndfile alone would silently read half
    with pytest.raises(TruncatedAudioError, match="cut.wav"):
        load_audio(path)
    path.write_bytes(data[:30])  # cut inside the header
    with pytest.raises(TruncatedAudioError, match="cut.wav"):
        load_audio(path)


def test_unsupported_format_is_named_and_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all")
    with pytest.raises(UnsupportedAudioFormatError, match="notes.wav") as info:
        read_audio(path)
    assert isinstance(info.value, AudioFileError) and isinstance(info.value, ValueError)


# ---------------------------------------------------------------- ctc_vocab


def test_build_encode_and_round_trip(tmp_path: Path) -> None:
    vocab = CtcVocab.build(["Hello,  world!", "don't stop"])
    assert vocab.tokens[:3] == ["<pad>", "<unk>", "|"] and vocab.blank_id == 0
    assert "," not in vocab.tokens and "'" in vocab.tokens and "H" not in vocab.tokens
    ids = vocab.encode("  HELLO   World. ")
    assert vocab.decode_ids(ids) == "hello world"
    vocab.save(tmp_path / "vocab.json")
    mapping = json.loads((tmp_path / "vocab.json").read_text())
    assert mapping == vocab.token_to_id
    loaded = CtcVocab.load(tmp_path / "vocab.json")
    assert loaded.tokens == vocab.tokens and loaded.encode("hello world") == ids


def test_unknown_character_is_named() -> None:
    vocab = CtcVocab.build(["abc"])
    with pytest.raises(UnknownCharacterError, match="'z'"):
        vocab.encode("abz")
    assert vocab.encode("abz", strict=False)[-1] == vocab.unk_id


def test_hf_uppercase_vocab_infers_case() -> None:
    mapping = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}
    vocab = CtcVocab.from_dict(mapping)
    assert vocab.encode("ab ba") == [5, 6, 4, 6, 5]


def test_greedy_decode_on_hand_made_logits() -> None:
    vocab = CtcVocab(["<pad>", "<unk>", "|", "a", "b"])
    # frames: a a _ a | b b _ b (pad)... -> "aa bb"; the second row stops after 3 frames.
    paths = torch.tensor([[3, 3, 0, 3, 2, 4, 4, 0, 4, 0], [4, 0, 4, 3, 3, 3, 3, 3, 3, 3]])
    logits = torch.nn.functional.one_hot(paths, 5).float() * 5 + torch.randn(2, 10, 5) * 0.1
    assert vocab.ctc_decode(logits, torch.tensor([10, 3])) == ["aa bb", "bb"]
    assert vocab.ctc_decode(paths) == ["aa bb", "bba"]


def test_greedy_decode_matches_transformers_tokenizer(tmp_path: Path) -> None:
    vocab = CtcVocab.build(["the cat sat", "a dog"])
    vocab.save(tmp_path / "vocab.json")
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    ids = torch.randint(0, len(vocab), (6, 40), generator=torch.Generator().manual_seed(0))
    ids[:, ::3] = vocab.blank_id  # plenty of blanks, as real CTC paths have
    assert vocab.ctc_decode(ids) == tokenizer.batch_decode(ids.tolist())


# ---------------------------------------------------------------- synthetic audio


def test_classification_set_is_deterministic_balanced_and_sized() -> None:
    a = make_audio_classification(12, seed=3)
    b = make_audio_classification(12, seed=3)
    assert all(np.array_equal(x["waveform"], y["waveform"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["waveform"], make_audio_classification(1, seed=4)[0]["waveform"])
    assert [x["label"] for x in a] == [i % 6 for i in range(12)]
    assert all(8000 <= len(x["waveform"]) <= 16000 and x["waveform"].dtype == np.float32 for x in a)
    with pytest.raises(ValueError):
        make_audio_classification(1, seed=0, num_classes=len(CLASS_NAMES) + 1)


def _describe(wave: np.ndarray, rate: int = 16000) -> np.ndarray:
    """Crude pitch-independent descriptors: pitch trend, pitch wobble, tonality, loudness
    modulation and strength of a second partial."""
    frames = wave[: len(wave) // 320 * 320].reshape(-1, 320)
    spec = np.abs(np.fft.rfft(frames * np.hanning(320), axis=1)) ** 2  # [F, 161]
    power = spec.sum(1)
    peak = np.fft.rfftfreq(320, 1 / rate)[spec.argmax(1)][power > 0.2 * power.max()]
    half = len(peak) // 2
    trend = np.log(np.median(peak[half:]) / np.median(peak[:half]))
    wobble = np.std(np.diff(np.log(peak)))
    full = np.abs(np.fft.rfft(wave)) ** 2
    tonality = np.sort(full)[::-1][: len(full) // 200].sum() / full.sum()
    rms = np.sqrt(power)
    mean_spec = spec.mean(0)
    order = np.argsort(mean_spec)[::-1]
    second = next(i for i in order if abs(i - order[0]) > 3)
    return np.array([trend, wobble, tonality, rms.std() / rms.mean(), mean_spec[second] / mean_spec[order[0]]])


def test_classes_are_distinct() -> None:
    examples = make_audio_classification(160, seed=0, num_classes=8)
    feats = np.stack([_describe(x["waveform"]) for x in examples])
    feats = (feats - feats.mean(0)) / feats.std(0)
    labels = np.array([x["label"] for x in examples])
    train, test = np.arange(160) < 96, np.arange(160) >= 96
    centroids = np.stack([feats[train & (labels == k)].mean(0) for k in range(8)])
    dists = ((feats[test][:, None] - centroids[None]) ** 2).sum(-1)
    accuracy = (dists.argmin(1) == labels[test]).mean()
    assert accuracy > 0.8  # nearest centroid on 5 crude descriptors; chance is 0.125


def test_spelled_words_are_deterministic_with_transcripts() -> None:
    a = make_spelled_words(5, seed=1)
    b = make_spelled_words(5, seed=1)
    assert [x["text"] for x in a] == [x["text"] for x in b]
    assert all(np.array_equal(x["waveform"], y["waveform"]) for x, y in zip(a, b))
    for example in a:
        words = example["text"].split(" ")
        assert 1 <= len(words) <= 3 and all(w.isalpha() and w.islower() for w in words)
        letters = sum(len(w) for w in words)
        seconds = len(example["waveform"]) / 16000
        # 60-80 ms per letter + 15 ms gaps, plus word pauses and lead-in/out silence
        assert letters * 0.07 < seconds < letters * 0.1 + 0.2 * len(words) + 0.2
    with pytest.raises(ValueError, match="Z"):
        make_spelled_words(1, seed=0, lexicon=["Zed"])


def test_letter_units_stay_distinct_under_speaker_shift() -> None:
    # Each letter is (start pitch, end pitch); two speakers at the extremes of the +-8% shift
    # must still not produce the same pair for different letters.
    def pitches(letter: str, shift: float) -> np.ndarray:
        unit = letter_unit(letter, shift, 0.07)
        spec = [np.abs(np.fft.rfft(part, 8192)) for part in (unit[:300], unit[-300:])]
        return np.log([np.fft.rfftfreq(8192, 1 / 16000)[s.argmax()] for s in spec])

    letters = string.ascii_lowercase
    low = np.stack([pitches(c, 0.92) for c in letters])
    high = np.stack([pitches(c, 1.08) for c in letters])
    gaps = np.abs(low[:, None] - high[None]).max(-1)  # [26, 26] worst-case separation
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 0.05
