"""DataModule for text classification: single texts or text pairs, one label or several.

Sources (``source``): ``synthetic`` (sentiment with negation, from a seed), ``jsonl`` / ``csv``
(columns ``text_column`` [, ``text_pair_column``], ``label_column``), ``lines`` (a folder of
plain-text files, one example per line, the file's extension naming the label, e.g.
rt-polarity's ``rt-polarity.pos`` / ``.neg``; ``.txt`` files use their stem) and ``hf``.
Multi-label (``multi_label: true``): the label column holds a list (JSONL) or labels joined by
``label_separator`` (CSV); targets become multi-hot vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from headstart.data.encoder_text import EncoderTextDataModule, FeatureDataset, Item, parse_all
from headstart.data.errors import DataError, Skipped, load_example, ride_along
from headstart.data.inputs import expand_inputs
from headstart.data.labels import check_spellings, clean_label
from headstart.data.sources.hf import load_hf_splits
from headstart.data.sources.text import read_lines, read_records, require_columns
from headstart.data.splits import hold_out, pick_source, require_hf_name, split_file
from headstart.data.synthetic.text_corpora import make_sentiment

Example = dict[str, Any]  # {"text", "text_pair" (or None), "label": str | list[str], "where"}


class TextClassificationDataModule(EncoderTextDataModule):
    """Texts (and pairs) -> input_ids / attention_mask / token_type_ids + label ids (or multi-hot)."""

    def __init__(
        self,
        source: Literal["synthetic", "jsonl", "csv", "lines", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        labels: Sequence[str] | None = None,
        multi_label: bool = False,
        label_separator: str = ",",
        case_sensitive_labels: bool = False,
        synthetic_sizes: dict[str, int] | None = None,
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.source = source
        self.paths = (path, train_path, val_path, test_path)
        self.val_fraction = val_fraction
        self.columns = (text_column, text_pair_column, label_column)
        self.labels: list[str] = list(labels or [])
        self.multi_label = multi_label
        self.label_separator = label_separator
        self.case_sensitive_labels = case_sensitive_labels
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 300, "test": 300})
        self.hf = (hf_name or path, hf_subset, dict(hf_splits or {"train": "train", "val": "validation", "test": "test"}))
        self.examples: dict[str, list[tuple[str, Item]]] = {}

    # ---- reading ------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.examples:
            return
        files = lambda: self._read_files((".jsonl", ".json", ".csv", ".tsv"))  # noqa: E731
        pick_source(self.source, {
            "synthetic": self._read_synthetic, "jsonl": files, "csv": files,
            "lines": lambda: self.examples.update(train=self._read_line_folder(Path(self.paths[0] or self.paths[1] or ""))),
            "hf": self._load_hf,
        }, "text classification")
        if "val" not in self.examples:
            self.examples["train"], self.examples["val"] = hold_out(self.examples["train"], self.val_fraction, self.seed)
        self._check_labels()

    def _read_synthetic(self) -> None:
        self.labels = self.labels or ["negative", "positive"]
        for i, (split, n) in enumerate(self.synthetic_sizes.items()):
            rows = make_sentiment(n, self.seed + 1000 * i)
            self.examples[split] = [(f"synthetic:{split}:{j}", {"text": r["text"], "text_pair": None,
                                     "label": self.labels[r["label"]]}) for j, r in enumerate(rows)]

    def _read_files(self, suffixes: tuple[str, ...]) -> None:
        for split, file in split_file(*self.paths, suffixes).items():
            self.examples[split] = parse_all(read_records(file, self.on_error), self._parse_record, self.on_error)

    def _parse_record(self, where: str, record: dict[str, Any]) -> Example:
        text_col, pair_col, label_col = self.columns
        require_columns(where, record, [text_col, label_col] + ([pair_col] if pair_col else []),
                        ("text_column", "label_column", "text_pair_column"))
        label = record[label_col]
        if self.multi_label:
            label = label if isinstance(label, list) else [s.strip() for s in str(label).split(self.label_separator) if s.strip()]
            label = [str(x) for x in label]
        else:
            label = str(label)
        return {"text": str(record[text_col]), "text_pair": str(record[pair_col]) if pair_col else None, "label": label}

    def _read_line_folder(self, folder: Path) -> list[tuple[str, Item]]:
        if not folder.is_dir():
            raise DataError(f"{folder}: data.source=lines needs data.path = a folder of one-label-per-file text files")
        out: list[tuple[str, Item]] = []
        for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            label = file.stem if file.suffix.lower() in (".txt", "") else file.suffix[1:]
            for where, text in read_lines(file, self.on_error):
                out.append((where, text if isinstance(text, Skipped) else {"text": text, "text_pair": None, "label": label}))
        if not out:
            raise DataError(f"{folder}: no text files")
        return out

    def _load_hf(self) -> None:
        name, subset, splits = self.hf
        tables = load_hf_splits(require_hf_name(name), subset, splits, self.val_fraction, self.seed)
        text_col, pair_col, label_col = self.columns
        feature = tables["train"].features.get(label_col)
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        self.labels = self.labels or list(names or [])
        for split, table in tables.items():
            rows = []
            for j, row in enumerate(table):
                label = row[label_col]
                to_name = (lambda v: names[v]) if names else str
                if isinstance(label, int) and label < 0:  # GLUE test splits carry -1 (no label)
                    continue
                record = {"text": row[text_col], "text_pair": row[pair_col] if pair_col else None,
                          "label": [to_name(v) for v in label] if self.multi_label else to_name(label)}
                rows.append((f"{name}:{split}:{j}", record))
            self.examples[split] = rows

    def _check_labels(self) -> None:
        """Label list from training (unless configured); an unknown label names its file and line."""
        def names(item: Item) -> list[str]:
            return [] if isinstance(item, Skipped) else (item["label"] if self.multi_label else [item["label"]])

        raw = [n for _, item in self.examples["train"] for n in names(item)]
        for items in self.examples.values():  # "pos " is "pos" (data/labels.py)
            for _, item in items:
                if not isinstance(item, Skipped):
                    item["label"] = [clean_label(n) for n in item["label"]] if self.multi_label else clean_label(item["label"])
        check_spellings(raw, next((p for p in self.paths if p), "the training labels"), self.case_sensitive_labels)
        if not self.labels:
            self.labels = sorted({n for _, item in self.examples["train"] for n in names(item)})
        known = set(self.labels)
        for split, items in self.examples.items():
            checked = []
            for where, item in items:
                unknown = [n for n in names(item) if n not in known]
                if unknown:
                    error = f"{where}: unknown label '{unknown[0]}' (labels: {', '.join(self.labels)})"
                    if self.on_error == "raise":
                        raise DataError(error)
                    item = Skipped(where, error.split(": ", 1)[1])
                checked.append((where, item))
            self.examples[split] = checked

    def training_texts(self) -> list[str]:
        self._load()
        return [t for _, it in self.examples["train"] if not isinstance(it, Skipped) for t in (it["text"], it["text_pair"]) if t]

    def info(self) -> dict[str, Any]:
        self._load()
        return {"labels": list(self.labels), "multi_label": self.multi_label}

    # ---- features -----------------------------------------------------------------------------
    def _feature(self, where: str, item: Example, index: int) -> dict[str, Any]:
        if not item["text"].strip() or (item["text_pair"] is not None and not item["text_pair"].strip()):
            raise DataError(f"{where}: empty text")
        enc = self.tokenizer(item["text"], item["text_pair"], truncation=True, max_length=self.max_length)
        feature = {key: list(value) for key, value in enc.items()}
        gold = item["label"]  # None when predicting
        if self.multi_label:
            feature["labels"] = [float(gold is not None and n in gold) for n in self.labels]
        else:
            feature["labels"] = self.labels.index(gold) if gold is not None else -1
        feature.update(text=item["text"], text_pair=item["text_pair"], where=where, index=index)
        return feature

    def _dataset(self, items: list[tuple[str, Item]]) -> FeatureDataset:
        features = [
            item if isinstance(item, Skipped) else load_example(lambda: self._feature(where, item, i), where, self.on_error)
            for i, (where, item) in enumerate(items)
        ]
        return FeatureDataset(ride_along(features))  # skipped texts ride on kept ones: no empty batch

    def setup(self, stage: str | None = None) -> None:
        self._load()
        if self.train_set is None:
            self.train_set = self._dataset(self.examples["train"])
            self.val_set = self._dataset(self.examples["val"])
            if "test" in self.examples:
                self.test_set = self._dataset(self.examples["test"])

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Text files: ``.jsonl`` records with the text column(s), anything else one text per line."""
        items: list[tuple[str, Item]] = []
        for file in expand_inputs(inputs, (".txt", ".jsonl", ".json", ".csv", ".tsv")):
            if Path(file).suffix.lower() in (".jsonl", ".json", ".csv", ".tsv"):
                text_col, pair_col, _ = self.columns
                for where, rec in read_records(file, self.on_error):
                    items.append((where, rec if isinstance(rec, Skipped) else load_example(
                        lambda: _predict_record(where, rec, text_col, pair_col), where, self.on_error)))
            else:
                for where, text in read_lines(file, self.on_error):
                    items.append((where, text if isinstance(text, Skipped) else {"text": text, "text_pair": None, "label": None}))
        self.predict_set = self._dataset(items)


def _predict_record(where: str, record: dict[str, Any], text_col: str, pair_col: str | None) -> Example:
    require_columns(where, record, [text_col] + ([pair_col] if pair_col else []), ("text_column", "text_pair_column"))
    return {"text": str(record[text_col]), "text_pair": str(record[pair_col]) if pair_col else None, "label": None}
