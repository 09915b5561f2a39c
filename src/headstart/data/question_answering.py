"""DataModule for extractive QA: (question, context) -> overlapping windows with answer positions.

Sources (``source``): ``synthetic`` (templated fact paragraphs, from a seed), ``squad`` (SQuAD
v1.1 / v2.0 JSON: data -> paragraphs -> qas; one file is split into train / val by article),
``jsonl`` (``id``, ``question``, ``context``, ``answers: {"text": [...], "answer_start": [...]}``
or flat ``answer_text`` / ``answer_start``) and ``hf`` (SQuAD-format columns). Every answer is
checked: ``context[answer_start:][:len(text)]`` must be the answer text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from headstart.data.encoder_text import EncoderTextDataModule, FeatureDataset, Item, parse_all
from headstart.data.errors import DataError, Skipped, load_example, ride_along, split_skipped
from headstart.data.inputs import expand_inputs
from headstart.data.qa_windows import prepare_qa_features
from headstart.data.sources.hf import load_hf_splits
from headstart.data.sources.text import read_jsonl, read_lines, require_columns
from headstart.data.splits import hold_out, pick_source, require_hf_name, split_file
from headstart.data.synthetic.text_corpora import make_qa

Example = dict[str, Any]  # {"id", "title", "question", "context", "answers": {"text", "answer_start"}}


def check_example(where: str, example: Example, allow_unanswerable: bool) -> Example:
    """Non-empty question and context; each answer found at its answer_start."""
    for key in ("question", "context"):
        if not isinstance(example[key], str) or not example[key].strip():
            raise DataError(f"{where}: empty {key}")
    answers = example["answers"]
    if len(answers["text"]) != len(answers["answer_start"]):
        raise DataError(f"{where}: {len(answers['text'])} answer texts but {len(answers['answer_start'])} answer_start")
    if not answers["text"] and not allow_unanswerable:
        raise DataError(f"{where}: no answer (set data.version_2_with_negative=true for unanswerable questions)")
    for text, start in zip(answers["text"], answers["answer_start"]):
        found = example["context"][int(start) : int(start) + len(text)]
        if found != text:
            raise DataError(f"{where}: answer_start {start} does not match answer '{text}' (context there: '{found}')")
    return example


def read_squad(path: Path, on_error: str) -> list[tuple[str, Item]]:
    """SQuAD JSON -> (``file:line`` of the question's id, example) pairs."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)["data"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not SQuAD JSON ({type(err).__name__}: {str(err)[:200]})") from err
    out = []
    cursor = 0
    for article in data:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                qid = str(qa.get("id", len(out)))
                found = text.find(f'"{qid}"', cursor)
                cursor = found if found >= 0 else cursor
                where = f"{path}:{text.count(chr(10), 0, cursor) + 1}"
                example = {
                    "id": qid, "title": article.get("title", ""), "question": qa.get("question", ""),
                    "context": paragraph.get("context", ""),
                    "answers": {"text": [a["text"] for a in qa.get("answers", [])],
                                "answer_start": [a["answer_start"] for a in qa.get("answers", [])]},
                }
                out.append((where, example))
    return out


class QuestionAnsweringDataModule(EncoderTextDataModule):
    """Windows: input_ids / attention_mask / token_type_ids [B, L], start/end_positions [B], plus
    offset_mapping, example_id, window_index, cls_index, context and gold answers per window.

    doc_stride: tokens shared by consecutive windows of a long context.
    version_2_with_negative: SQuAD v2 (unanswerable questions allowed; the answer is then "").
    """

    def __init__(
        self,
        source: Literal["synthetic", "squad", "jsonl", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        doc_stride: int = 128,
        version_2_with_negative: bool = False,
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_people: int = 2,
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.source = source
        self.paths = (path, train_path, val_path, test_path)
        self.val_fraction = val_fraction
        self.doc_stride = doc_stride
        self.version_2_with_negative = version_2_with_negative
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 1500, "val": 200, "test": 200})
        self.synthetic_people = synthetic_people
        self.hf = (hf_name or path, hf_subset, dict(hf_splits or {"train": "train", "val": "validation", "test": None}))
        self.examples: dict[str, list[tuple[str, Item]]] = {}

    def _load(self) -> None:
        if self.examples:
            return
        raw: dict[str, list[tuple[str, Any]]] = pick_source(self.source, {
            "synthetic": self._read_synthetic, "squad": self._read_squad, "jsonl": self._read_jsonl, "hf": self._load_hf,
        }, "question answering")
        if "val" not in raw:
            raw["train"], raw["val"] = hold_out(raw["train"], self.val_fraction, self.seed)
        self.examples = {
            split: [(w, ex if isinstance(ex, Skipped) else load_example(
                lambda: check_example(w, ex, self.version_2_with_negative), w, self.on_error)) for w, ex in items]
            for split, items in raw.items()
        }

    def _read_synthetic(self) -> dict[str, list[tuple[str, Any]]]:
        raw = {}
        for i, (split, n) in enumerate(self.synthetic_sizes.items()):
            rows = make_qa(n, self.seed + 1000 * i, self.synthetic_people)
            raw[split] = [(f"synthetic:{split}:{j}", {
                "id": r["id"], "title": "", "question": r["question"], "context": r["context"],
                "answers": {"text": [r["answer_text"]], "answer_start": [r["answer_start"]]}}) for j, r in enumerate(rows)]
        return raw

    def _read_squad(self) -> dict[str, list[tuple[str, Any]]]:
        raw = {s: read_squad(f, self.on_error) for s, f in split_file(*self.paths, (".json",)).items()}
        if "val" not in raw:  # split by article, so no paragraph is in both
            titles = sorted({ex["title"] for _, ex in raw["train"]})
            _, val_titles = hold_out(titles, self.val_fraction, self.seed)
            raw["val"] = [(w, ex) for w, ex in raw["train"] if ex["title"] in set(val_titles)]
            raw["train"] = [(w, ex) for w, ex in raw["train"] if ex["title"] not in set(val_titles)]
        return raw

    def _read_jsonl(self) -> dict[str, list[tuple[str, Any]]]:
        return {s: parse_all(read_jsonl(f, self.on_error), _from_record, self.on_error)
                for s, f in split_file(*self.paths, (".jsonl", ".json")).items()}

    def _load_hf(self) -> dict[str, list[tuple[str, Any]]]:
        name, subset, splits = self.hf
        tables = load_hf_splits(require_hf_name(name), subset, splits, self.val_fraction, self.seed)
        return {split: [(f"{name}:{split}:{j}", {
            "id": str(row["id"]), "title": row.get("title", ""), "question": row["question"], "context": row["context"],
            "answers": {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}})
            for j, row in enumerate(table)] for split, table in tables.items()}

    def training_texts(self) -> list[str]:
        self._load()
        return [t for _, ex in self.examples["train"] if not isinstance(ex, Skipped) for t in (ex["question"], ex["context"])]

    def info(self) -> dict[str, Any]:
        self._load()
        return {"version_2_with_negative": self.version_2_with_negative}

    # ---- features -----------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """doc_stride; when it is half the window or more (a model with short positions), a quarter
        of the window instead, so the question still leaves room for new context in each window."""
        return self.doc_stride if self.doc_stride < self.max_length // 2 else self.max_length // 4

    def windows(self, items: list[tuple[str, Item]], with_answers: bool) -> list[list[Item]]:
        """Per example its windows (features); a Skipped example stays a one-item list."""
        out: list[list[Item]] = []
        good = [(i, w, ex) for i, (w, ex) in enumerate(items) if not isinstance(ex, Skipped)]
        by_index: dict[int, list[Item]] = {i: [ex] for i, (_, ex) in enumerate(items) if isinstance(ex, Skipped)}
        for chunk_start in range(0, len(good), 512):
            chunk = good[chunk_start : chunk_start + 512]
            enc = prepare_qa_features(
                self.tokenizer, [ex["question"] for _, _, ex in chunk], [ex["context"] for _, _, ex in chunk],
                list(range(len(chunk))), [ex["answers"] for _, _, ex in chunk] if with_answers else None,
                self.max_length, self.stride,
            )
            for f in range(len(enc["input_ids"])):
                i, where, ex = chunk[enc["example_id"][f]]
                feature = {key: value[f] for key, value in enc.items()}
                feature.update(example_id=ex["id"], where=where, question=ex["question"], context=ex["context"],
                               answers=list(ex["answers"]["text"]))
                by_index.setdefault(i, []).append(feature)
        for i in range(len(items)):
            out.append(by_index.get(i, []))
        return out

    def _dataset(self, items: list[tuple[str, Item]], split: str) -> FeatureDataset:
        features = [f for windows in self.windows(items, with_answers=True) for f in windows]
        # skipped questions ride on kept windows: a batch of only skipped ones would be empty
        return FeatureDataset(ride_along(features, split))

    def setup(self, stage: str | None = None) -> None:
        self._load()
        if self.train_set is None:
            self.train_set = self._dataset(self.examples["train"], "train")
            self.val_set = self._dataset(self.examples["val"], "val")
            if "test" in self.examples:
                self.test_set = self._dataset(self.examples["test"], "test")

    def _collate(self, samples: list[Any]) -> dict[str, Any]:
        # prediction items are whole examples (all their windows), so one batch answers them fully
        flat = [f for s in samples for f in (s if isinstance(s, list) else [s])]
        return super()._collate(flat)

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """JSONL records with ``question`` and ``context`` (and an optional ``id``), or text lines
        ``question<TAB>context``; each answered with the best span over all its windows."""
        items: list[tuple[str, Item]] = []
        for file in expand_inputs(inputs, (".jsonl", ".json", ".txt", ".tsv")):
            if Path(file).suffix.lower() in (".jsonl", ".json"):
                records = read_jsonl(file, self.on_error)
            else:
                records = ((w, t if isinstance(t, Skipped) else dict(zip(("question", "context"), t.split("\t", 1))))
                           for w, t in read_lines(file, self.on_error))
            for where, record in records:
                items.append((where, record if isinstance(record, Skipped) else load_example(
                    lambda: _predict_example(where, record), where, self.on_error)))
        examples = [windows for windows in self.windows(items, with_answers=False)]
        self.predict_set = _ExampleDataset([w if w else [Skipped("predict", "no windows")] for w in examples])


class _ExampleDataset(FeatureDataset):
    """Items are whole examples (lists of windows); the collate flattens them."""

    def __init__(self, examples: list[list[Item]]) -> None:
        self.items = examples
        self.lengths = [sum(len(f["input_ids"]) for f in split_skipped(ex)[0]) for ex in examples]


def _predict_example(where: str, record: dict[str, Any]) -> Example:
    require_columns(where, record, ["question", "context"])
    return {"id": str(record.get("id", where)), "title": "", "question": str(record["question"]),
            "context": str(record["context"]), "answers": {"text": [], "answer_start": []}}


def _from_record(where: str, record: dict[str, Any]) -> Example:
    require_columns(where, record, ["question", "context"])
    if "answers" in record:
        answers = record["answers"]
        if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
            raise DataError(f"{where}: 'answers' must be {{\"text\": [...], \"answer_start\": [...]}}")
        answers = {"text": list(answers["text"]), "answer_start": list(answers["answer_start"])}
    elif "answer_text" in record:
        answers = {"text": [record["answer_text"]], "answer_start": [record.get("answer_start", -1)]}
    else:
        answers = {"text": [], "answer_start": []}
    return {"id": str(record.get("id", where)), "title": str(record.get("title", "")), "question": record["question"],
            "context": record["context"], "answers": answers}
