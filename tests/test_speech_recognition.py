"""CTC speech recognition end to end: train, eval, predict (long files chunked), vocabulary
saved with the checkpoint, decoding, CTC loss parity with transformers, bad transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers

from conftest import make_cfg
from headstart.data.audio import SpeechRecognitionDataModule
from headstart.data.ctc_vocab import CtcVocab
from headstart.data.errors import DataError
from headstart.data.synthetic.audio import LEXICON, make_spelled_words
from headstart.eval import evaluate
from headstart.losses.ctc import CtcLoss
from headstart.ops.ctc_decode import beam_decoder, greedy_decode, has_beam_search
from headstart.predict import predict
from headstart.train import train

SHORT = [
    "task=speech_recognition",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.synthetic_sizes={train: 24, val: 16, test: 16}",
]


@pytest.fixture
def manifests(tmp_path: Path) -> dict[str, Path]:
    """train/val/test JSONL manifests (paths relative to them) over spelled-word WAVs."""
    root = tmp_path / "asr"
    out = {}
    for split, n, seed in (("train", 16, 1), ("val", 8, 2), ("test", 8, 3)):
        rows = []
        for i, ex in enumerate(make_spelled_words(n, seed, max_words=2)):
            path = root / "wavs" / f"{split}_{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, ex["waveform"] * 0.3, 16000)
            rows.append({"path": f"wavs/{path.name}", "text": ex["text"].upper() + "!", "duration": len(ex["waveform"]) / 16000})
        out[split] = root / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _datamodule(**kwargs: object) -> SpeechRecognitionDataModule:
    dm = SpeechRecognitionDataModule(num_workers=0, batch_size=4, **kwargs)  # type: ignore[arg-type]
    dm.configure({"sample_rate": 16000, "receptive_field": 400})
    return dm


def _manifest_args(manifests: dict[str, Path]) -> list[str]:
    return ["data.source=manifest", *(f"data.{s}_path={p}" for s, p in manifests.items())]


def test_trains_writes_metrics_and_saves_vocab(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, *SHORT))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val/wer", "val/cer", "test/wer", "test/cer", "best_checkpoint", "fit_seconds", "train_samples_per_second"):
        assert key in written, key
    assert results["global_step"] == 3
    meta = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)["headstart"]
    tokens = meta["data_info"]["vocab"]
    assert tokens[:3] == ["<pad>", "<unk>", "|"] and tokens[3:] == sorted({c for word in LEXICON for c in word})
    assert meta["model_rebuild"]["ctc_vocab"] == {tok: i for i, tok in enumerate(tokens)}
    assert json.loads((tmp_path / "vocab.json").read_text()) == meta["model_rebuild"]["ctc_vocab"]


def test_eval_and_predict_from_checkpoint_reuse_its_vocab(tmp_path: Path, manifests: dict[str, Path]) -> None:
    results = train(make_cfg(tmp_path / "run", *SHORT, *_manifest_args(manifests)))
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=test", config_name="eval"))
    assert metrics["test/cer"] == pytest.approx(results["test/cer"], abs=1e-6)

    # Eval on other data: transcripts with characters the checkpoint never saw are mapped by
    # its vocabulary (strictly: an unknown character is a named error), never rebuilt.
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"path": str(manifests["test"].parent / "wavs/test_000.wav"), "text": "cat"}) + "\n")
    metrics = evaluate(make_cfg(tmp_path / "eval2", f"ckpt_path={ckpt}", "split=test", f"+data.test_path={other}",
                                config_name="eval"))
    assert "test/wer" in metrics
    other.write_text(json.dumps({"path": str(manifests["test"].parent / "wavs/test_000.wav"), "text": "zq"}) + "\n")
    with pytest.raises(DataError, match=r"other.jsonl:1 .*not in the vocabulary"):
        evaluate(make_cfg(tmp_path / "eval3", f"ckpt_path={ckpt}", "split=test", f"+data.test_path={other}", config_name="eval"))

    clip = manifests["test"].parent / "wavs" / "test_000.wav"
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.tile(sf.read(clip)[0], 4), 16000)
    cfg = make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs=[{clip},{long_file}]",
                   "+data.predict_chunk_seconds=1.0", config_name="predict")
    records = predict(cfg)
    assert [r["input"] for r in records] == [str(clip), str(long_file)]
    assert records[0]["chunks"] == 1 and records[1]["chunks"] > 1
    assert all(isinstance(r["transcript"], str) for r in records)
    assert json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[1]) == records[1]


def test_greedy_decoding_on_hand_made_logits() -> None:
    tokens = ["<pad>", "<unk>", "|", "a", "b"]
    ids = torch.tensor([[3, 3, 0, 3, 4, 2, 2, 4, 0, 0, 3], [4, 0, 4, 4, 2, 3, 0, 0, 0, 0, 0]])
    logits = torch.nn.functional.one_hot(ids, len(tokens)).float() * 5.0
    assert greedy_decode(logits, torch.tensor([10, 7]), tokens) == ["aab b", "bb a"]
    assert greedy_decode(logits, None, tokens)[0] == "aab ba"  # the 11th frame counts without lengths


def test_vocab_round_trip_and_normalisation(tmp_path: Path) -> None:
    vocab = CtcVocab.build(["Hello, World!", "don't stop"])
    assert vocab.tokens[:3] == ["<pad>", "<unk>", "|"] and "'" in vocab.tokens and "," not in vocab.tokens
    vocab.save(tmp_path / "vocab.json")
    again = CtcVocab.load(tmp_path / "vocab.json")
    ids = again.encode("HELLO   world")
    assert again.tokens == vocab.tokens and again.decode_ids(ids) == "hello world"


def test_ctc_loss_matches_transformers_wav2vec2_for_ctc() -> None:
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        vocab_size=9, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
        feat_extract_norm="layer", ctc_loss_reduction="mean", ctc_zero_infinity=True, pad_token_id=0,
        mask_time_prob=0.0,
    )  # fmt: skip
    model = transformers.Wav2Vec2ForCTC(config).eval()
    waves = torch.randn(2, 8000)
    attention = torch.ones(2, 8000, dtype=torch.long)
    attention[1, 5000:] = 0
    labels = torch.tensor([[3, 4, 5, 2, 6], [7, 8, -100, -100, -100]])
    out = model(waves, attention_mask=attention, labels=labels)
    frames = model._get_feat_extract_output_lengths(attention.sum(-1))
    ours = CtcLoss(blank=0, zero_infinity=True)(out.logits, frames, labels.clamp(min=0), (labels >= 0).sum(-1))
    assert torch.allclose(ours["loss"], out.loss, atol=1e-5)


@pytest.mark.skipif(not has_beam_search(), reason="flashlight-text (beam search extra) not installed")
def test_beam_search_agrees_with_greedy_on_peaked_logits() -> None:
    tokens = ["<pad>", "<unk>", "|", "a", "b"]
    ids = torch.tensor([[3, 0, 4, 2, 3, 3, 0]])
    logits = torch.nn.functional.one_hot(ids, len(tokens)).float() * 20.0
    decode = beam_decoder(tokens, beam_size=5)
    assert decode(logits, torch.tensor([7])) == greedy_decode(logits, None, tokens) == ["ab a"]


def test_beam_decoding_without_the_extra_is_a_clear_error() -> None:
    if has_beam_search():
        pytest.skip("flashlight-text is installed")
    with pytest.raises(ImportError, match="flashlight-text"):
        beam_decoder(["<pad>", "|", "a"])


def test_empty_transcript_is_named_or_skipped(tmp_path: Path, manifests: dict[str, Path]) -> None:
    lines = manifests["train"].read_text().splitlines()
    row = json.loads(lines[2])
    row["text"] = " ?! "  # nothing left after normalisation
    lines[2] = json.dumps(row)
    manifests["train"].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:3 .*empty transcript"):
        _datamodule(source="manifest", train_path=str(manifests["train"]), val_path=str(manifests["val"])).setup("fit")
    dm = _datamodule(source="manifest", train_path=str(manifests["train"]), val_path=str(manifests["val"]), on_error="skip")
    dm.setup("fit")
    skipped = [dm.train_set[i] for i in range(len(dm.train_set)) if not isinstance(dm.train_set[i], dict)]
    assert len(skipped) == 1 and "train.jsonl:3" in str(skipped[0])


def test_character_outside_a_given_vocab_is_named(tmp_path: Path, manifests: dict[str, Path]) -> None:
    CtcVocab(["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxy"]).save(tmp_path / "vocab.json")  # no "z"
    lines = manifests["val"].read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] = "zebra"
    lines[0] = json.dumps(row)
    manifests["val"].write_text("\n".join(lines) + "\n")
    args = {"source": "manifest", "train_path": str(manifests["train"]), "val_path": str(manifests["val"]),
            "vocab_path": str(tmp_path / "vocab.json")}
    with pytest.raises(DataError, match=r"val.jsonl:1 .*'z'.*not in the vocabulary"):
        _datamodule(**args).setup("fit")
    dm = _datamodule(**args, on_error="skip")
    dm.setup("fit")
    assert dm.vocab is not None and dm.vocab.tokens[-1] == "y"
    assert sum(not isinstance(dm.val_set[i], dict) for i in range(len(dm.val_set))) == 1


def test_bad_audio_in_a_manifest_is_counted_as_skipped_in_training(tmp_path: Path, manifests: dict[str, Path]) -> None:
    (manifests["val"].parent / "wavs" / "broken.wav").write_bytes(b"")
    with manifests["val"].open("a") as handle:
        handle.write(json.dumps({"path": "wavs/broken.wav", "text": "cat"}) + "\n")
    args = [*SHORT, *_manifest_args(manifests), "trainer.limit_val_batches=null", "test=false"]
    with pytest.raises(DataError, match="broken.wav: file is empty"):
        train(make_cfg(tmp_path / "raise", *args))
    assert train(make_cfg(tmp_path / "skip", *args, "data.on_error=skip"))["data_skipped"] == 1


@pytest.mark.slow
def test_learns_synthetic_spelled_words(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, "experiment=synthetic/speech_recognition"))
    assert results["val/cer"] <= 0.2, results
