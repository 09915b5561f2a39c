"""Text classification end to end: tiny BERT / DistilBERT, pairs, multi-label, eval, predict, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_cfg
from headstart.data.encoder_text import FeatureDataset, pad_features
from headstart.data.errors import DataError
from headstart.data.samplers import LengthGroupedBatchSampler
from headstart.eval import evaluate
from headstart.predict import predict
from headstart.train import train

SHORT = [
    "task=text_classification",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.synthetic_sizes={train: 48, val: 16, test: 16}",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def pair_files(tmp_path: Path) -> Path:
    """train / val JSONL of sentence pairs with several labels each."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    words = ["cats purr", "dogs bark", "birds sing", "fish swim"]
    rows = [{"premise": words[i % 4], "hypothesis": words[(i + 1) % 4], "labels": ["a", "b"][: 1 + i % 2] if i % 3 else ["c"]}
            for i in range(24)]
    write_jsonl(folder / "train.jsonl", rows[:16])
    write_jsonl(folder / "val.jsonl", rows[16:])
    return folder


@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_each_model_trains_and_writes_metrics(tmp_path: Path, model: str) -> None:
    results = train(make_cfg(tmp_path, *SHORT, f"model={model}", "logger=default", "trainer.limit_val_batches=1"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    tables = list((tmp_path / "wandb").rglob("media/table/**/*.table.json"))
    assert tables, "no W&B table of validation examples"
    for key in ("val/acc", "val/f1_macro", "test/acc", "test/f1_macro", "best_checkpoint", "fit_seconds",
                "train_samples_per_second", "peak_memory_mb"):
        assert key in written, key
    assert written["global_step"] == 3 and results["val/acc"] == pytest.approx(written["val/acc"])
    # the tokenizer trained for the preset sits in the run directory, next to the model config
    assert (tmp_path / "backbone" / "tokenizer.json").is_file() and (tmp_path / "backbone" / "config.json").is_file()
    rows = (tmp_path / "csv").rglob("metrics.csv")
    logged = "".join(p.read_text() for p in rows)
    assert "train/padding_fraction" in logged


def test_pairs_multi_label_eval_and_predict(tmp_path: Path, pair_files: Path) -> None:
    data = ["data.source=jsonl", f"data.path={pair_files}", "data.text_column=premise",
            "data.text_pair_column=hypothesis", "data.label_column=labels", "data.multi_label=true"]
    results = train(make_cfg(tmp_path / "run", *SHORT, *data, "task.monitor=val/f1_micro"))
    assert {"val/f1_micro", "val/f1_macro"} <= set(results) and "val/acc" not in results
    ckpt = results["best_checkpoint"]

    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", config_name="eval"))
    assert metrics["val/f1_micro"] == pytest.approx(results["val/f1_micro"], abs=1e-6)

    inputs = write_jsonl(
        tmp_path / "in.jsonl", [{"premise": "cats purr", "hypothesis": "dogs bark"}, {"premise": "fish swim", "hypothesis": "x"}]
    )
    predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={inputs}", "+task.threshold=0.0", config_name="predict"))
    records = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [r["text_pair"] for r in records] == ["dogs bark", "x"]
    assert set(records[0]["labels"]) == {"a", "b", "c"} and all(0 <= s <= 1 for s in records[0]["scores"])


def test_text_lines_predict_keeps_input_order(tmp_path: Path) -> None:
    ckpt = train(make_cfg(tmp_path / "run", *SHORT))["best_checkpoint"]
    lines = tmp_path / "texts.txt"
    texts = ["the movie was not good .", "a", "the food was really excellent and the service was fun ."]
    lines.write_text("\n".join(texts) + "\n")
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={lines}", config_name="predict"))
    assert [r["text"] for r in records] == texts
    assert records[0]["input"] == f"{lines}:1" and set(records[0]["labels"]) == {"negative", "positive"}
    assert sum(records[0]["scores"]) == pytest.approx(1.0, abs=1e-4)


def test_line_folder_source_labels_from_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "polarity"
    folder.mkdir()
    (folder / "reviews.pos").write_text("".join(f"a fine film number {i}\n" for i in range(20)))
    (folder / "reviews.neg").write_text("".join(f"a dull film number {i}\n" for i in range(20)))
    results = train(make_cfg(tmp_path, *SHORT, "data.source=lines", f"data.path={folder}", "data.val_fraction=0.25"))
    assert "val/acc" in results


def test_bad_input_names_file_and_line_or_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    good = [{"text": f"text {i}", "label": "pos" if i % 2 else "neg"} for i in range(16)]
    write_jsonl(folder / "train.jsonl", good)
    val = folder / "val.jsonl"
    write_jsonl(val, good[:6] + [{"text": "odd", "label": "neutral"}])
    base = [*SHORT, "data.source=jsonl", f"data.path={folder}", "test=false"]
    with pytest.raises(DataError, match=r"val.jsonl:7: unknown label 'neutral' \(labels: neg, pos\)"):
        train(make_cfg(tmp_path / "a", *base))

    write_jsonl(val, good[:6] + [{"text": "  ", "label": "pos"}])
    with pytest.raises(DataError, match=r"val.jsonl:7: empty 'text'"):
        train(make_cfg(tmp_path / "b", *base))

    val.write_bytes(b'{"text": "ok", "label": "pos"}\n{"text": "caf\xe9", "label": "neg"}\n{"text": "x", "label": "neutral"}\n')
    with pytest.raises(DataError, match=r"val.jsonl:2: not valid UTF-8"):
        train(make_cfg(tmp_path / "c", *base))
    results = train(make_cfg(tmp_path / "d", *base, "data.on_error=skip"))
    assert results["data_skipped"] == 2


def test_dynamic_padding_to_multiple_and_length_grouping_pads_less() -> None:
    batch = pad_features(
        [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": 1}, {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": 0}],
        pad_id=0,
        multiple=8,
    )
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"][1].tolist() == [2, 3, 0, 0, 0, 0, 0, 0]
    assert batch["num_tokens"] == 5 and batch["num_padded"] == 11 and batch["labels"].tolist() == [1, 0]

    import random

    rng = random.Random(0)
    data = FeatureDataset([{"input_ids": [1] * rng.randint(4, 120)} for _ in range(512)])

    def padding(batches: list[list[int]]) -> float:
        padded = sum(len(b) * max(data.lengths[i] for i in b) for b in batches)
        return 1 - sum(data.lengths) / padded

    grouped = list(LengthGroupedBatchSampler(data.lengths, 16, shuffle=True, seed=0))
    plain = [list(range(i, i + 16)) for i in range(0, 512, 16)]
    assert padding(grouped) < 0.1 < 0.3 < padding(plain)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_learns_synthetic_sentiment(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, f"experiment=synthetic/text_classification_{model}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.90, metrics


def test_hf_source_reads_a_local_dataset_with_class_names(tmp_path: Path) -> None:
    import datasets

    from headstart.run.build import build

    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    table = datasets.Dataset.from_dict(
        {"sentence": [f"film {i}" for i in range(20)], "label": [i % 2 for i in range(20)]}, features=features
    )
    datasets.DatasetDict({"train": table}).save_to_disk(str(tmp_path / "hf"))
    built = build(make_cfg(tmp_path, "data=sst2", "task=text_classification", "model.preset=tiny", f"data.hf_name={tmp_path / 'hf'}"))
    assert built.task.labels == ["neg", "pos"]
    built.datamodule.setup("fit")
    batch = next(iter(built.datamodule.train_dataloader()))
    assert batch["input_ids"].shape[0] == 18 and set(batch["labels"].tolist()) == {0, 1}


def test_a_checkpoint_from_before_task_pooling_is_rebuilt_reading_cls_as_it_was_trained(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """task.pooling=auto now applies BERT's pooler; a checkpoint whose stored record has no
    task.pooling was trained on the [CLS] state and must be evaluated that way, not silently with
    a pooler it never trained through."""
    import torch

    from headstart.run.checkpoint import load_checkpoint, rebuild

    results = train(make_cfg(tmp_path / "run", *SHORT, "test=false"))
    ckpt = torch.load(results["best_checkpoint"], weights_only=True)
    assert ckpt["headstart"]["config"]["task"]["pooling"] == "auto"
    del ckpt["headstart"]["config"]["task"]["pooling"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    cfg = make_cfg(tmp_path / "eval", f"ckpt_path={old}", "inputs=none", config_name="predict")
    task = rebuild(cfg, load_checkpoint(str(old))).task
    assert task.pooling == "cls"
    assert f"{old}: written before task.pooling existed: task.pooling=cls, as it was trained" in capsys.readouterr().out
    new_cfg = make_cfg(tmp_path / "eval2", f"ckpt_path={results['best_checkpoint']}", "inputs=none", config_name="predict")
    assert rebuild(new_cfg, load_checkpoint(results["best_checkpoint"])).task.pooling == "pooler"
