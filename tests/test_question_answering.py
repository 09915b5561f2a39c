"""Extractive QA end to end: tiny BERT / DistilBERT, SQuAD files, long contexts, v2, eval, predict, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from headstart.data.errors import DataError
from headstart.data.qa_windows import prepare_qa_features
from headstart.data.tokenizer_training import train_tokenizer
from headstart.eval import evaluate
from headstart.metrics.squad import window_candidates
from headstart.predict import predict
from headstart.tasks.question_answering import best_answer
from headstart.train import train

SHORT = [
    "task=question_answering",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.synthetic_sizes={train: 48, val: 16, test: 16}",
]

PARAGRAPH = "Anna Berg lives in Oslo . " * 6 + "Omar Haddad works for Acme . " + "Li Wei likes the color red . " * 6


def squad_json(path: Path, articles: int = 4, unanswerable: bool = False, bad_start: bool = False) -> Path:
    data = []
    for a in range(articles):
        start = PARAGRAPH.index("Acme")
        qas = [{"id": f"{a}-0", "question": "who does Omar Haddad work for ?",
                "answers": [{"text": "Acme", "answer_start": start + (3 if bad_start and a == 1 else 0)}]}]
        if unanswerable:
            qas.append({"id": f"{a}-1", "question": "where does Eva live ?", "answers": [], "is_impossible": True})
        data.append({"title": f"article {a}", "paragraphs": [{"context": PARAGRAPH, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}, indent=1))
    return path


@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_each_model_trains_and_writes_metrics(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, *SHORT, f"model={model}", "logger=default", "trainer.limit_val_batches=1"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    tables = list((tmp_path / "wandb").rglob("media/table/**/*.table.json"))
    assert tables, "no W&B table of validation examples"
    for key in ("val/exact_match", "val/f1", "test/exact_match", "test/f1", "best_checkpoint", "train_samples_per_second"):
        assert key in written, key
    assert 0 <= written["val/f1"] <= 100 and written["global_step"] == 3


def test_long_contexts_squad_v2_eval_and_predict(tmp_path: Path) -> None:
    path = squad_json(tmp_path / "squad.json", articles=6, unanswerable=True)
    data = ["data.source=squad", f"data.path={path}", "data.val_fraction=0.34", "data.max_length=48",
            "data.doc_stride=16", "data.version_2_with_negative=true"]
    results = train(make_cfg(tmp_path / "run", *SHORT, *data, "test=false"))
    assert {"val/exact_match", "val/f1"} <= set(results)
    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", config_name="eval"))
    assert metrics["val/f1"] == pytest.approx(results["val/f1"], abs=1e-4)

    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "context": PARAGRAPH}) + "\n"
                              for i, q in enumerate(["who does Omar Haddad work for ?", "where does Anna Berg live ?"])))
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={inputs}", config_name="predict"))
    assert [r["id"] for r in records] == ["q0", "q1"]
    for record in records:
        assert isinstance(record["score"], float)
        if record["answer"]:
            assert PARAGRAPH[record["start"] : record["end"]] == record["answer"]


def test_post_processing_on_real_windows() -> None:
    """Answer crossing a window edge, answer only in the second window, no answer (v2)."""
    context = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    tokenizer = train_tokenizer([context, "what word"], "wordpiece", 200)
    answer = {"text": ["kappa lambda"], "answer_start": [context.index("kappa")]}
    feats = prepare_qa_features(tokenizer, ["what word ?"], [context], ["e"], [answer], max_length=12, doc_stride=4)
    assert len(feats["input_ids"]) >= 2
    # in the first window the answer is not whole -> labelled [CLS]; a later one holds it
    assert feats["start_positions"][0] == feats["cls_index"][0]
    inside = [i for i, s in enumerate(feats["start_positions"]) if s != feats["cls_index"][i]]
    assert inside and inside[0] > 0

    windows = []
    for i, offsets in enumerate(feats["offset_mapping"]):
        n = len(offsets)
        start, end = torch.full((n,), -5.0), torch.full((n,), -5.0)
        if i in inside:  # the model points at the whole answer in the window that holds it
            start[feats["start_positions"][i]], end[feats["end_positions"][i]] = 4.0, 4.0
        start[feats["cls_index"][i]] = end[feats["cls_index"][i]] = 1.0
        windows.append(window_candidates(start, end, offsets))
    picked = best_answer(windows, context, version_2_with_negative=True, null_score_diff_threshold=0.0)
    assert picked["answer"] == "kappa lambda" and picked["score"] == pytest.approx(8.0)
    # raise the null score above the best span: v2 answers "", v1 still the span
    assert best_answer(windows, context, True, null_score_diff_threshold=-7.0)["answer"] == ""
    assert best_answer(windows, context, False, -7.0)["answer"] == "kappa lambda"


def test_bad_input_names_file_and_line_or_is_skipped(tmp_path: Path) -> None:
    path = squad_json(tmp_path / "squad.json", articles=4, bad_start=True)
    base = [*SHORT, "data.source=squad", f"data.path={path}", "data.val_fraction=0.25", "test=false"]
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if '"1-0"' in text)
    with pytest.raises(DataError, match=rf"squad.json:{line}: answer_start \d+ does not match answer 'Acme'"):
        train(make_cfg(tmp_path / "a", *base))
    results = train(make_cfg(tmp_path / "b", *base, "data.on_error=skip"))
    assert results["data_skipped"] == 1

    lines = tmp_path / "qa.jsonl"
    lines.write_bytes(b'{"question": "q", "context": "c", "answer_text": "c", "answer_start": 0}\n'
                      b'{"question": "", "context": "c d", "answer_text": "d", "answer_start": 2}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: empty 'question'"):
        train(make_cfg(tmp_path / "c", *SHORT, "data.source=jsonl", f"data.train_path={lines}", f"data.val_path={lines}"))
    lines.write_bytes(b'{"question": "q", "context": "c", "answer_text": "c", "answer_start": 0}\n{"question": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: not valid UTF-8"):
        train(make_cfg(tmp_path / "d", *SHORT, "data.source=jsonl", f"data.train_path={lines}", f"data.val_path={lines}"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bert", "distilbert"])
def test_learns_synthetic_qa(tmp_path: Path, model: str) -> None:
    train(make_cfg(tmp_path, f"experiment=synthetic/question_answering_{model}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/f1"] >= 70.0, metrics


def test_hf_source_reads_a_local_squad_format_dataset(tmp_path: Path) -> None:
    import datasets

    from headstart.run.build import build

    start = PARAGRAPH.index("Acme")
    rows = {"id": [str(i) for i in range(10)], "title": ["t"] * 10, "context": [PARAGRAPH] * 10,
            "question": ["who does Omar Haddad work for ?"] * 10,
            "answers": [{"text": ["Acme"], "answer_start": [start]}] * 10}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "hf"))
    built = build(make_cfg(tmp_path, "data=squad", "task=question_answering", "model.preset=tiny",
                           f"data.hf_name={tmp_path / 'hf'}", "data.max_length=32", "data.doc_stride=8"))
    built.datamodule.setup("fit")
    batch = next(iter(built.datamodule.train_dataloader()))
    assert batch["input_ids"].shape[1] <= 32 and len(set(batch["example_id"])) < len(batch["example_id"])
    hits = [i for i, s in enumerate(batch["start_positions"].tolist()) if s != batch["cls_index"][i]]
    assert hits  # some window holds the answer
