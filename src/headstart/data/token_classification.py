"""DataModule for token classification (NER): words with one tag each -> sub-word tokens.

Sources (``source``): ``synthetic`` (templated sentences with person / place / org names, IOB2),
``conll`` (CoNLL column files: one ``TOKEN ... TAG`` line per word, a blank line between
sentences, ``-DOCSTART-`` lines ignored; ``token_column`` / ``tag_column`` pick the columns),
``jsonl`` (``tokens_column`` / ``tags_column`` lists) and ``hf`` (tag ids with ClassLabel names).
Labels are aligned to sub-words by :mod:`headstart.data.token_alignment` (first sub-token, or all
with ``label_all_tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from headstart.data.encoder_text import EncoderTextDataModule, FeatureDataset, Item, parse_all
from headstart.data.errors import DataError, Skipped, load_example, ride_along
from headstart.data.inputs import expand_inputs
from headstart.data.sources.hf import load_hf_splits
from headstart.data.sources.text import read_jsonl, read_lines, require_columns
from headstart.data.splits import hold_out, pick_source, require_hf_name, split_file
from headstart.data.synthetic.text_corpora import NER_LABELS, make_ner
from headstart.data.token_alignment import tokenize_and_align_labels

# Words of raw text for prediction, split as CoNLL-style data is: punctuation on its own.
WORD = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")

CONLL_SUFFIXES = ("", ".txt", ".conll", ".iob", ".iob2", ".bio", ".testa", ".testb", ".train")


def _column_count(lines: list[tuple[str, str | Skipped]]) -> int:
    """The file's number of columns: the most common among its word lines (ties: the first seen)."""
    counts: dict[int, int] = {}
    for _, line in lines:
        if isinstance(line, str) and line.strip() and not line.startswith("-DOCSTART-"):
            n = len(line.split())
            counts[n] = counts.get(n, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else 0


def read_conll(path: str | Path, token_column: int, tag_column: int, on_error: str) -> list[tuple[str, Item]]:
    """Sentences of a CoNLL file as (``file:first line``, {"tokens", "tags"}) or Skipped.

    Every word line must have the file's number of columns: with one missing (``John NN O``
    in a 4-column file) the tag column would silently hold another column's value.
    """
    lines = list(read_lines(path, on_error, skip_blank=False))  # type: ignore[arg-type]
    expected = _column_count(lines)
    sentences: list[tuple[str, Item]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start, bad = "", None

    def flush() -> None:
        nonlocal tokens, tags, bad
        if bad is not None:
            sentences.append((start, bad))
        elif tokens:
            sentences.append((start, {"tokens": tokens, "tags": tags}))
        tokens, tags, bad = [], [], None

    for where, line in lines:
        if not isinstance(line, Skipped) and (not line.strip() or line.startswith("-DOCSTART-")):
            flush()
            continue
        if not tokens and bad is None:
            start = where
        if isinstance(line, Skipped):
            bad = bad or line
            continue
        fields = line.split()
        try:
            if len(fields) != expected:
                raise IndexError
            token, tag = fields[token_column], fields[tag_column]
        except IndexError:
            error = (f"{where}: {len(fields)} columns, expected token column {token_column} and tag column "
                     f"{tag_column} (the file's lines have {expected} columns)")
            if on_error == "raise":
                raise DataError(error) from None
            bad = bad or Skipped(where, error.split(": ", 1)[1])
            continue
        tokens.append(token)
        tags.append(tag)
    flush()
    return sentences


def word_line(where: str, index: int, one_word_a_line: bool) -> str:
    """Where word ``index`` of a sentence at ``where`` is: CoNLL's ``file:line`` (one word a line,
    ``where`` the first word's), else ``<where> word <index>``."""
    found = re.fullmatch(r"(.*):(\d+)", where) if one_word_a_line else None
    return f"{found.group(1)}:{int(found.group(2)) + index}" if found else f"{where} word {index}"


def check_words_kept(where: str, tokens: list[str], tags: list[str], word_ids: Sequence[int | None],
                     max_length: int | None, one_word_a_line: bool = False) -> None:
    """A tagged word (not ``O``) that the tokenizer turns into no token at all (a zero-width space,
    a control character) would take its entity out of training and scoring without a word: a
    DataError naming its line (a counted skip of the sentence under ``data.on_error=skip``). Words
    past ``max_length`` are truncation, not this."""
    kept = {w for w in word_ids if w is not None}
    last = max(kept, default=-1)
    truncated = max_length is not None and len(word_ids) >= max_length
    for i, (token, tag) in enumerate(zip(tokens, tags)):
        if i not in kept and tag != "O" and not (truncated and i > last):
            raise DataError(f"{word_line(where, i, one_word_a_line)}: the word {token!r} (tag {tag}) becomes no token for this "
                            "tokenizer, so its entity would be lost; remove or replace it")


class TokenClassificationDataModule(EncoderTextDataModule):
    """Sentences (words + tags) -> input_ids / attention_mask [B, L], labels [B, L] (-100 ignored),
    plus per example its words, word_ids and word character offsets (for predictions)."""

    def __init__(
        self,
        source: Literal["synthetic", "conll", "jsonl", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        scheme: Literal["IOB1", "IOB2", "IOBES"] = "IOB2",
        labels: Sequence[str] | None = None,
        label_all_tokens: bool = False,
        token_column: int = 0,
        tag_column: int = -1,
        tokens_column: str = "tokens",
        tags_column: str = "tags",
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
        self.scheme = scheme
        self.labels: list[str] = list(labels or [])
        self.label_all_tokens = label_all_tokens
        self.conll_columns = (token_column, tag_column)
        self.json_columns = (tokens_column, tags_column)
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 1000, "val": 200, "test": 200})
        self.hf = (hf_name or path, hf_subset, dict(hf_splits or {"train": "train", "val": "validation", "test": "test"}))
        self.examples: dict[str, list[tuple[str, Item]]] = {}

    def _load(self) -> None:
        if self.examples:
            return
        pick_source(self.source, {
            "synthetic": self._read_synthetic, "conll": self._read_conll, "jsonl": self._read_jsonl, "hf": self._load_hf,
        }, "token classification")
        if "val" not in self.examples:
            self.examples["train"], self.examples["val"] = hold_out(self.examples["train"], self.val_fraction, self.seed)
        self._check_tags()

    def _read_synthetic(self) -> None:
        self.labels = self.labels or list(NER_LABELS)
        for i, (split, n) in enumerate(self.synthetic_sizes.items()):
            self.examples[split] = [(f"synthetic:{split}:{j}", r) for j, r in enumerate(make_ner(n, self.seed + 1000 * i))]

    def _read_conll(self) -> None:
        for split, file in split_file(*self.paths, CONLL_SUFFIXES).items():
            self.examples[split] = read_conll(file, *self.conll_columns, self.on_error)

    def _read_jsonl(self) -> None:
        for split, file in split_file(*self.paths, (".jsonl", ".json")).items():
            self.examples[split] = parse_all(read_jsonl(file, self.on_error), self._parse_record, self.on_error)

    def _parse_record(self, where: str, record: dict[str, Any]) -> dict[str, Any]:
        tokens_col, tags_col = self.json_columns
        require_columns(where, record, [tokens_col, tags_col], ("tokens_column", "tags_column"))
        tokens, tags = record[tokens_col], record[tags_col]
        if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
            raise DataError(f"{where}: '{tokens_col}' and '{tags_col}' must be lists of the same length")
        tags = [self.labels[t] if isinstance(t, int) and self.labels else str(t) for t in tags]
        return {"tokens": [str(t) for t in tokens], "tags": tags}

    def _load_hf(self) -> None:
        name, subset, splits = self.hf
        tables = load_hf_splits(require_hf_name(name), subset, splits, self.val_fraction, self.seed)
        tokens_col, tags_col = self.json_columns
        names = getattr(getattr(tables["train"].features[tags_col], "feature", None), "names", None)
        self.labels = self.labels or list(names or [])
        for split, table in tables.items():
            self.examples[split] = [
                (f"{name}:{split}:{j}", {"tokens": row[tokens_col], "tags": [names[t] if names else str(t) for t in row[tags_col]]})
                for j, row in enumerate(table)
            ]

    def _check_tags(self) -> None:
        """Tag list from training (O first, then by type) unless configured; unknown tags name their line."""
        if not self.labels:
            found = {t for _, it in self.examples["train"] if not isinstance(it, Skipped) for t in it["tags"]}
            self.labels = ["O"] * ("O" in found) + sorted(found - {"O"}, key=lambda t: (t[2:], t[:1]))
        known = set(self.labels)
        for split, items in self.examples.items():
            checked = []
            for where, item in items:
                if not isinstance(item, Skipped):
                    unknown = [t for t in item["tags"] if t not in known]
                    if not item["tokens"]:
                        unknown = ["(empty sentence)"]
                    if unknown:
                        reason = f"unknown tag '{unknown[0]}' (tags: {', '.join(self.labels)})"
                        if self.on_error == "raise":
                            raise DataError(f"{where}: {reason}")
                        item = Skipped(where, reason)
                checked.append((where, item))
            self.examples[split] = checked

    def training_texts(self) -> list[str]:
        self._load()
        return [" ".join(it["tokens"]) for _, it in self.examples["train"] if not isinstance(it, Skipped)]

    def info(self) -> dict[str, Any]:
        self._load()
        return {"labels": list(self.labels), "scheme": self.scheme}

    # ---- features -----------------------------------------------------------------------------
    def _feature(self, where: str, tokens: list[str], tags: list[str] | None) -> dict[str, Any]:
        if not tokens or not any(t.strip() for t in tokens):
            raise DataError(f"{where}: empty text")
        ids = [[self.labels.index(t) for t in tags]] if tags is not None else None
        enc = tokenize_and_align_labels(self.tokenizer, [tokens], ids, self.labels, self.max_length, self.label_all_tokens)
        feature = {key: value[0] for key, value in enc.items()}
        if tags is not None:
            check_words_kept(where, tokens, tags, feature["word_ids"], self.max_length, self.source == "conll")
        if tags is None:  # prediction: one position per first sub-token, so its word is known
            feature["labels"] = [-100] * len(feature["input_ids"])
        text, spans = "", []
        for token in tokens:  # the words joined by spaces: offsets for pre-split input
            text += " " if text else ""
            spans.append((len(text), len(text) + len(token)))
            text += token
        feature.update(tokens=list(tokens), word_spans=spans, text=text, where=where)
        return feature

    def _dataset(self, split: str) -> FeatureDataset:
        features = [
            item if isinstance(item, Skipped) else load_example(
                lambda: self._feature(where, item["tokens"], item.get("tags")), where, self.on_error)
            for where, item in self.examples[split]
        ]
        # skipped sentences ride on kept ones: a batch of only skipped ones would be empty
        return FeatureDataset(ride_along(features, split))

    def setup(self, stage: str | None = None) -> None:
        self._load()
        if self.train_set is None:
            self.train_set = self._dataset("train")
            self.val_set = self._dataset("val")
            if "test" in self.examples:
                self.test_set = self._dataset("test")

    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Text lines (words as the tokenizer's pre-tokenizer splits them) or JSONL with ``tokens``
        or ``text``; entities come back with character offsets into the text."""
        items: list[tuple[str, Item]] = []
        for file in expand_inputs(inputs, (".txt", ".jsonl", ".json")):
            if Path(file).suffix.lower() in (".jsonl", ".json"):
                records = read_jsonl(file, self.on_error)
            else:
                records = ((w, t if isinstance(t, Skipped) else {"text": t}) for w, t in read_lines(file, self.on_error))
            for where, record in records:
                items.append((where, record if isinstance(record, Skipped) else load_example(
                    lambda: self._predict_item(where, record), where, self.on_error)))
        features = [item if isinstance(item, Skipped) else load_example(
            lambda: self._predict_feature(where, item), where, self.on_error) for where, item in items]
        self.predict_set = FeatureDataset(features)

    def _predict_item(self, where: str, record: dict[str, Any]) -> dict[str, Any]:
        if isinstance(record.get(self.json_columns[0]), list):
            return {"tokens": [str(t) for t in record[self.json_columns[0]]]}
        require_columns(where, record, ["text"])
        return {"text": str(record["text"])}

    def _predict_feature(self, where: str, item: dict[str, Any]) -> dict[str, Any]:
        if "tokens" in item:
            return self._feature(where, item["tokens"], None)
        text = item["text"]
        words = list(WORD.finditer(text))
        feature = self._feature(where, [w.group() for w in words], None)
        feature.update(text=text, word_spans=[w.span() for w in words])
        return feature
