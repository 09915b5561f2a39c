"""Audio classification end to end: train, eval, predict (long files chunked), padding
invariance, duration filters, bad audio files, W&B audio media, backbone freezing, learning."""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import make_cfg
from headstart.backbones.wav2vec2 import Wav2Vec2Backbone
from headstart.data.audio import AudioClassificationDataModule
from headstart.data.audio_batches import collate_audio
from headstart.data.errors import DataError
from headstart.data.synthetic.audio import CLASS_NAMES, make_audio_classification
from headstart.eval import evaluate
from headstart.heads.mean_pool import MeanPoolHead
from headstart.losses.ce import CrossEntropy
from headstart.predict import predict
from headstart.tasks.audio_classification import AudioClassificationTask
from headstart.train import train

SHORT = [
    "task=audio_classification",
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
def audio_folder(tmp_path: Path) -> Path:
    """train/ val/ test/ of <class>/<clip>.wav, written at 8 kHz stereo (resampled and mixed on load)."""
    root = tmp_path / "clips"
    for split, n, seed in (("train", 18, 1), ("val", 9, 2), ("test", 9, 3)):
        for i, ex in enumerate(make_audio_classification(n, seed, num_classes=3, min_duration=0.3, max_duration=0.5)):
            wave = ex["waveform"][::2]  # 16 kHz -> 8 kHz (a crude decimation is fine for a fixture)
            path = root / split / CLASS_NAMES[ex["label"]] / f"{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.stack([wave, 0.5 * wave], axis=1) * 0.3, 8000)
    return root


def _datamodule(**kwargs: object) -> AudioClassificationDataModule:
    dm = AudioClassificationDataModule(num_workers=0, batch_size=4, **kwargs)  # type: ignore[arg-type]
    dm.configure({"sample_rate": 16000, "receptive_field": 400})
    return dm


def test_trains_writes_metrics_and_logs_audio_media(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, *SHORT, "logger=default"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val/acc", "val/f1_macro", "test/acc", "test/f1_macro", "best_checkpoint", "fit_seconds",
                "train_samples_per_second", "peak_memory_mb"):
        assert key in written, key
    assert written["val/acc"] == pytest.approx(results["val/acc"]) and written["global_step"] == 3
    run = next((tmp_path / "wandb").glob("offline-run-*"))
    clips = list(run.rglob("media/audio/**/*.wav"))
    assert clips, "validation audio players were not logged"
    logged = "".join(p.read_text(errors="ignore") for p in run.rglob("*.wandb"))
    assert "pred: " in logged and "true: " in logged  # captions name predicted and true label


def test_eval_and_predict_from_checkpoint_with_long_file_chunks(tmp_path: Path, audio_folder: Path) -> None:
    results = train(make_cfg(tmp_path / "run", *SHORT, "data.source=folder", f"data.path={audio_folder}"))
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=test", config_name="eval"))
    assert metrics["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)

    clip = next((audio_folder / "test").rglob("*.wav"))
    long_file = tmp_path / "long.flac"
    sf.write(long_file, np.tile(sf.read(clip)[0][:, 0], 8), 8000)  # ~3 s -> 4 chunks of 0.8 s
    cfg = make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs=[{clip},{long_file}]",
                   "+data.predict_chunk_seconds=0.8", config_name="predict")
    records = predict(cfg)
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [r["input"] for r in lines] == [str(clip), str(long_file)] and lines == records
    for record in lines:
        assert set(record["labels"]) == {"falling_chirp", "rising_chirp", "tone"}
        assert abs(sum(record["scores"]) - 1.0) < 1e-4


def test_padded_batch_gives_the_same_logits_as_the_clip_alone() -> None:
    torch.manual_seed(0)
    backbone = Wav2Vec2Backbone(preset="tiny")
    task = AudioClassificationTask(backbone, MeanPoolHead, CrossEntropy(), {}, ["a", "b", "c"], torch.optim.AdamW).eval()
    short, long = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    batch = collate_audio([{"waveform": short[:7000], "labels": 0, "where": "s"},
                           {"waveform": long, "labels": 1, "where": "l"}], kind="classification")
    assert batch["waveforms"].shape == (2, 16000) and batch["lengths"].tolist() == [7000, 16000]
    with torch.no_grad():
        together = task(batch["waveforms"], batch["lengths"])
        alone = task(torch.from_numpy(short[:7000])[None], torch.tensor([7000]))
    assert torch.allclose(together[0], alone[0], atol=1e-5)


def test_duration_filter_drops_and_counts_or_flags_long_clips(tmp_path: Path, audio_folder: Path) -> None:
    long_clip = audio_folder / "train" / "tone" / "zz_long.wav"
    sf.write(long_clip, np.random.default_rng(0).standard_normal(8000 * 3) * 0.1, 8000)  # 3 s
    dm = _datamodule(source="folder", path=str(audio_folder), max_duration=2.0)
    dm.setup("fit")
    assert dm.dropped == {"train": 1, "val": 0, "test": 0} and len(dm.train_set) == 18

    with pytest.raises(DataError, match=r"zz_long.wav: clip is 3.00 s, outside"):
        _datamodule(source="folder", path=str(audio_folder), max_duration=2.0, duration_filter="error").setup("fit")
    dm = _datamodule(source="folder", path=str(audio_folder), max_duration=2.0, duration_filter="error", on_error="skip")
    dm.setup("fit")
    batch = collate_audio([dm.train_set[i] for i in range(len(dm.train_set))], kind="classification")
    assert len(batch["_skipped"]) == 1 and "zz_long.wav" in batch["_skipped"][0]


def test_manifest_duration_that_lies_is_caught_at_decode(tmp_path: Path, audio_folder: Path) -> None:
    clip = next((audio_folder / "train").rglob("*.wav"))
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": str(clip), "label": "tone", "duration": 0.4}, {"path": str(clip), "label": "tone", "duration": 9.0}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dm = _datamodule(source="manifest", path=str(manifest), val_path=str(manifest), min_duration=0.35, max_duration=1.0)
    dm.setup("fit")  # the 9 s row is dropped by its stated duration; the first is really 0.3-0.5 s
    assert dm.dropped["train"] == 1
    sf.write(clip, np.zeros(8000 * 2), 8000)  # the file changed: 2 s now, over max_duration
    with pytest.raises(DataError, match=rf"m.jsonl:1 \({clip}\): clip is 2.00 s, outside the allowed"):
        dm.train_set[0]


def _read_all(dataset: object) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]  # type: ignore[index, arg-type]


def test_decoded_clips_are_kept_so_later_epochs_read_no_file(tmp_path: Path, audio_folder: Path) -> None:
    dm = _datamodule(source="folder", path=str(audio_folder))
    dm.setup("fit")
    first, first_val = _read_all(dm.train_set), _read_all(dm.val_set)
    assert dm.decoded_clips.used == sum(w.nbytes for w in dm.decoded_clips.clips.values())
    assert len(dm.decoded_clips.clips) == 27  # 18 train + 9 val clips, under (split, index) keys
    audio_folder.rename(tmp_path / "moved")  # from now on no file can be read
    again = _read_all(dm.train_set)
    assert [s["where"] for s in again] == [s["where"] for s in first]
    assert all(np.array_equal(a["waveform"], b["waveform"]) and a["labels"] == b["labels"] for a, b in zip(again, first))
    assert all(np.array_equal(a["waveform"], b["waveform"]) for a, b in zip(_read_all(dm.val_set), first_val))
    # the same run without the cache must read the files: they are gone
    (tmp_path / "moved").rename(audio_folder)
    uncached = _datamodule(source="folder", path=str(audio_folder), cache_mb=0)
    uncached.setup("fit")
    assert all(np.array_equal(a["waveform"], b["waveform"]) for a, b in zip(_read_all(uncached.train_set), first))
    audio_folder.rename(tmp_path / "moved")
    with pytest.raises(DataError, match=r"\.wav"):
        uncached.train_set[0]


def test_cache_budget_and_worker_shares(tmp_path: Path, audio_folder: Path) -> None:
    dm = _datamodule(source="folder", path=str(audio_folder), cache_mb=0.05)  # 52,428 bytes: a few 0.3-0.5 s clips
    dm.setup("fit")
    crops = _datamodule(source="folder", path=str(audio_folder), max_seconds=0.2)
    crops.setup("fit")
    _read_all(dm.train_set)
    kept = len(dm.decoded_clips.clips)
    assert 0 < kept < 18 and dm.decoded_clips.used <= 0.05 * 2**20
    # training crops are cut from the kept clip at each read, at a new random position
    _read_all(crops.train_set)
    audio_folder.rename(tmp_path / "moved")
    with pytest.raises(DataError):
        _read_all(dm.train_set)  # clips beyond the budget are decoded at each read: gone now
    one, two = _read_all(crops.train_set), _read_all(crops.train_set)
    assert all(len(s["waveform"]) == 3200 for s in one + two)
    assert not all(np.array_equal(a["waveform"], b["waveform"]) for a, b in zip(one, two))
    # each persistent worker keeps its share; workers that restart every epoch keep nothing
    assert AudioClassificationDataModule(num_workers=4, cache_mb=100).decoded_clips.budget == 25 * 2**20
    assert AudioClassificationDataModule(num_workers=0, cache_mb=100).decoded_clips.budget == 100 * 2**20
    assert AudioClassificationDataModule(num_workers=4, persistent_workers=False).decoded_clips.budget == 0
    with pytest.raises(ValueError, match=r"data.cache_mb=-1: .* must be >= 0"):
        AudioClassificationDataModule(cache_mb=-1)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.wav", b"", "file is empty"),
        ("truncated.wav", None, "truncated"),
        ("notes.ogg", b"this is plain text, not audio", "unsupported or unrecognised audio format"),
    ],
)
def test_bad_audio_file_is_named(tmp_path: Path, audio_folder: Path, name: str, content: bytes | None, message: str) -> None:
    bad = audio_folder / "train" / "tone" / name
    if content is None:
        good = next((audio_folder / "train" / "tone").glob("*.wav")).read_bytes()
        content = good[: len(good) // 2]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=rf"{name}.*{message}"):
        _datamodule(source="folder", path=str(audio_folder)).setup("fit")


def test_bad_files_are_counted_skips_under_on_error_skip(tmp_path: Path, audio_folder: Path) -> None:
    (audio_folder / "val" / "tone" / "empty.wav").write_bytes(b"")
    (audio_folder / "val" / "tone" / "text.wav").write_bytes(b"RIFF....WAVE but not really")
    overrides = [*SHORT, "data.source=folder", f"data.path={audio_folder}", "trainer.limit_val_batches=null", "test=false"]
    with pytest.raises(DataError, match="empty.wav: file is empty"):
        train(make_cfg(tmp_path / "raise", *overrides))
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip"))
    assert results["data_skipped"] == 2


def test_freeze_steps_keeps_backbone_fixed_then_trains_it(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, *SHORT, "model.freeze_steps=3", "model.freeze_feature_encoder=false",
                   "test=false", "trainer.limit_val_batches=1")
    results = train(cfg)
    state = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    lightning.seed_everything(cfg.seed)  # the tiny preset's init under the run's seed
    fresh = Wav2Vec2Backbone(preset="tiny").state_dict()
    assert all(torch.equal(state[f"backbone.{k}"], v) for k, v in fresh.items() if not k.startswith("masked"))
    backbone = Wav2Vec2Backbone(preset="tiny", freeze_steps=2, freeze_feature_encoder=True)
    backbone.update_freeze(0)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.update_freeze(2)
    assert all(p.requires_grad for p in backbone.model.encoder.parameters())
    assert not any(p.requires_grad for p in backbone.model.feature_extractor.parameters())


@pytest.mark.slow
def test_learns_synthetic_audio_classes(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path, "experiment=synthetic/audio_classification"))
    assert results["val/acc"] >= 0.9, results
