"""Token classification (NER) end to end: tiny BERT / DistilBERT, CoNLL files, IOB1, eval, predict, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from headstart.data.errors import DataError
from headstart.data.token_classification import read_conll
from headstart.eval import evaluate
from headstart.metrics.entity_f1 import EntityF1
from headstart.predict import predict
from headstart.tasks.token_classification import entities_with_offsets, mark_inline, word_predictions
from headstart.train import train

SHORT = [
    "task=token_classification",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.synthetic_sizes={train: 48, val: 16, test: 16}",
]

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


@pytest.fixture
def conll_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "conll"
    folder.mkdir()
    (folder / "train.txt").write_text(CONLL * 4)
    (folder / "dev.txt").write_text(CONLL)
    return folder


@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_each_model_trains_and_writes_metrics(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, *SHORT, f"model={model}", "logger=default", "trainer.limit_val_batches=1"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    tables = list((tmp_path / "wandb").rglob("media/table/**/*.table.json"))
    assert tables, "no W&B table of validation examples"
    for key in ("val/precision", "val/recall", "val/f1", "val/f1_PER", "val/f1_LOC", "val/f1_ORG",
                "test/f1", "best_checkpoint", "train_samples_per_second"):
        assert key in written, key
    assert "val/acc" not in written and written["global_step"] == 3


def test_conll_files_eval_and_predict_with_char_offsets(tmp_path: Path, conll_folder: Path) -> None:
    data = ["data.source=conll", f"data.path={conll_folder}", "data.tag_column=3", "data.label_all_tokens=true"]
    results = train(make_cfg(tmp_path / "run", *SHORT, *data, "test=false"))
    assert {"val/f1_ORG", "val/f1_MISC", "val/f1_PER", "val/f1_LOC"} <= set(results)
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", config_name="eval"))
    assert metrics["val/f1"] == pytest.approx(results["val/f1"], abs=1e-6)

    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": "Peter Blackburn visited BRUSSELS."}) + "\n" + json.dumps({"tokens": ["EU", "rejects"]}) + "\n")
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={inputs}", config_name="predict"))
    assert [r["text"] for r in records] == ["Peter Blackburn visited BRUSSELS.", "EU rejects"]
    for record in records:
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] in {"PER", "ORG", "LOC", "MISC"}


def test_predictions_map_back_to_words_and_offsets() -> None:
    # tokens: [CLS] pe ##ter black ##burn visited brussels . [SEP]
    word_ids = [None, 0, 0, 1, 1, 2, 3, 4, None]
    labels = ["O", "B-PER", "I-PER", "B-LOC"]
    token_preds = [0, 1, 3, 2, 0, 0, 3, 0, 0]  # continuation sub-tokens are ignored
    by_word = word_predictions(token_preds, word_ids)
    assert by_word == {0: 1, 1: 2, 2: 0, 3: 3, 4: 0}
    text = "Peter Blackburn visited Brussels ."
    spans = [(0, 5), (6, 15), (16, 23), (24, 32), (33, 34)]
    entities = entities_with_offsets([labels[by_word[w]] for w in range(5)], spans, text)
    assert entities == [{"type": "PER", "text": "Peter Blackburn", "start": 0, "end": 15},
                        {"type": "LOC", "text": "Brussels", "start": 24, "end": 32}]
    assert mark_inline(text, entities) == "[Peter Blackburn|PER] visited [Brussels|LOC] ."


def test_entity_f1_iob1_by_hand() -> None:
    # IOB1: I- opens an entity, B- only separates two adjacent entities of one type.
    labels = ["O", "I-PER", "B-PER", "I-LOC"]
    gold = [[1, 1, 2, 0, 3]]  # PER(0-1), PER(2), LOC(4)
    pred = [[1, 1, 1, 0, 3]]  # PER(0-2) wrong boundary, LOC(4) right
    metric = EntityF1(labels, scheme="IOB1")
    metric.update(torch.tensor(pred), torch.tensor(gold))
    scores = metric.compute()
    assert scores["precision"].item() == pytest.approx(1 / 2)
    assert scores["recall"].item() == pytest.approx(1 / 3)
    assert scores["f1"].item() == pytest.approx(0.4)
    assert scores["f1_LOC"].item() == pytest.approx(1.0) and scores["f1_PER"].item() == 0.0


def test_bad_input_names_file_and_line_or_is_skipped(tmp_path: Path, conll_folder: Path) -> None:
    dev = conll_folder / "dev.txt"
    dev.write_text(CONLL + "\nParis NNP B-NP B-CITY\n")
    base = [*SHORT, "data.source=conll", f"data.path={conll_folder}", "data.tag_column=3", "test=false"]
    with pytest.raises(DataError, match=r"dev.txt:15: unknown tag 'B-CITY'"):
        train(make_cfg(tmp_path / "a", *base))

    dev.write_bytes(CONLL.encode() + b"\nM\xfcnchen NNP B-NP B-LOC\n\nlonely\n")
    with pytest.raises(DataError, match=r"dev.txt:15: not valid UTF-8"):
        train(make_cfg(tmp_path / "b", *base))
    short = tmp_path / "short.txt"
    short.write_text("EU NNP B-NP B-ORG\n\nlonely\n")
    with pytest.raises(DataError, match=r"short.txt:3: 1 columns, expected token column 0 and tag column 3"):
        read_conll(short, 0, 3, "raise")
    results = train(make_cfg(tmp_path / "c", *base, "data.on_error=skip"))
    assert results["data_skipped"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_learns_synthetic_ner(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, f"experiment=synthetic/token_classification_{model}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/f1"] >= 0.85, metrics


def test_hf_source_reads_a_local_dataset_with_tag_names(tmp_path: Path) -> None:
    import datasets

    from headstart.run.build import build

    names = ["O", "B-PER", "I-PER"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    table = datasets.Dataset.from_dict({"tokens": [["Anna", "Berg", "sings"]] * 10, "ner_tags": [[1, 2, 0]] * 10}, features=features)
    datasets.DatasetDict({"train": table}).save_to_disk(str(tmp_path / "hf"))
    built = build(make_cfg(tmp_path, "task=token_classification", "model.preset=tiny", "data.source=hf",
                           f"data.path={tmp_path / 'hf'}", "data.tags_column=ner_tags"))
    assert built.task.labels == names
    built.datamodule.setup("fit")
    batch = next(iter(built.datamodule.train_dataloader()))
    assert batch["labels"].shape == batch["input_ids"].shape and 1 in batch["labels"].tolist()[0]
