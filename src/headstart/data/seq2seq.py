"""DataModule for summarization and translation: (source, target) pairs -> token ids -> padded batches.

Sources (``data.source``): ``synthetic`` (``synthetic_task``: summarization or translation,
see ``headstart.data.synthetic.text_corpora``), ``jsonl`` / ``csv`` (``source_column``,
``target_column``), ``parallel`` (aligned text files ``<split>.<source_lang>`` and
``<split>.<target_lang>``, line i of one translating line i of the other), ``hf`` (a ``datasets``
name or ``save_to_disk`` dir; dotted columns such as ``translation.en`` read nested fields).

Sources get ``source_prefix`` (T5's "summarize: ") and are cut at ``max_source_length`` tokens,
targets at ``max_target_length``. Batches are length-grouped (DDP-aware) and dynamically padded;
labels are padded with -100. Evaluation batches are sorted by length; each example carries its
dataset ``index`` so outputs can be put back in input order. Prediction keeps input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Sampler

from headstart.data.base import DataModule
from headstart.data.errors import DataError, Skipped, ride_along, split_skipped
from headstart.data.samplers import LengthGroupedBatchSampler
from headstart.data.sources.text import RECORD_SUFFIXES, field, read_lines, read_records, require_columns
from headstart.data.splits import explicit_paths, hold_out, pick_source, require_hf_name, split_files
from headstart.data.synthetic.text_corpora import make_summarization, make_translation
from headstart.data.text_lm import ItemsDataset, PromptCollator, read_prompts
from headstart.data.tokenizers import take_or_train

Pair = tuple[str, "tuple[str, str] | Skipped"]  # (where, (source, target))


def read_parallel(source_file: Path, target_file: Path, on_error: Any) -> list[Pair]:
    """Aligned lines of two files; an empty line or a length mismatch names file and line."""
    sources = list(read_lines(source_file, on_error, skip_blank=False))
    targets = list(read_lines(target_file, on_error, skip_blank=False))
    while sources and targets and not _text(sources[-1]) and not _text(targets[-1]):  # trailing blank lines
        sources.pop(), targets.pop()
    if len(sources) != len(targets):
        longer, shorter = (source_file, target_file) if len(sources) > len(targets) else (target_file, source_file)
        n = min(len(sources), len(targets))
        raise DataError(
            f"{longer}:{n + 1}: no matching line in {shorter} (parallel files must align line by line: "
            f"{source_file} has {len(sources)} lines, {target_file} has {len(targets)})"
        )
    pairs: list[Pair] = []
    for (s_where, s), (t_where, t) in zip(sources, targets):
        problem = next((x for x in (s, t) if isinstance(x, Skipped)), None)
        if problem is None:
            for where, text, side in ((s_where, s, "source"), (t_where, t, "target")):
                if not text.strip():
                    problem = Skipped(where, f"empty {side} line")
                    break
        if problem is not None:
            if on_error != "skip":
                raise DataError(str(problem))
            pairs.append((s_where, problem))
            continue
        pairs.append((s_where, (s, t)))
    return pairs


def _text(item: tuple[str, Any]) -> str:
    return item[1].strip() if isinstance(item[1], str) else "x"


class Seq2SeqCollator:
    """Examples -> input_ids / attention_mask [B, S], labels [B, T] (-100 padded), index [B],
    sources, targets (the raw strings, for metrics and media)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        if not kept:
            empty = torch.zeros(0, 1, dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty, "labels": empty, "index": empty[:, 0],
                    "sources": [], "targets": [], "_skipped": skipped}
        src_len = max(len(s["input_ids"]) for s in kept)
        tgt_len = max(len(s["labels"]) for s in kept)
        ids = torch.full((len(kept), src_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(kept), src_len), dtype=torch.long)
        labels = torch.full((len(kept), tgt_len), -100, dtype=torch.long)
        for row, s in enumerate(kept):
            ids[row, : len(s["input_ids"])] = torch.tensor(s["input_ids"])
            mask[row, : len(s["input_ids"])] = 1
            labels[row, : len(s["labels"])] = torch.tensor(s["labels"])
        return {
            "input_ids": ids, "attention_mask": mask, "labels": labels,
            "index": torch.tensor([s["index"] for s in kept]),
            "sources": [s["source"] for s in kept], "targets": [s["target"] for s in kept], "_skipped": skipped,
        }


class Seq2SeqDataModule(DataModule):
    """(source, target) pairs from synthetic, jsonl/csv, parallel or hf data (see module docstring)."""

    def __init__(
        self,
        source: Literal["synthetic", "jsonl", "csv", "parallel", "hf"] = "synthetic",
        synthetic_task: Literal["summarization", "translation"] = "summarization",
        synthetic_sizes: dict[str, int] | None = None,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.05,
        source_column: str = "source",
        target_column: str = "target",
        source_lang: str = "en",
        target_lang: str = "de",
        source_prefix: str = "",
        max_source_length: int = 512,
        max_target_length: int = 128,
        length_grouping: bool = True,
        bucket_size_multiplier: int = 50,
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        tokenizer_max_texts: int = 50000,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.synthetic_task = synthetic_task
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 200})
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.val_fraction = val_fraction
        self.columns = (source_column, target_column)
        self.langs = (source_lang, target_lang)
        self.source_prefix = source_prefix or ""
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.length_grouping = length_grouping
        self.bucket_size_multiplier = bucket_size_multiplier
        self.hf = {"name": hf_name or path, "subset": hf_subset,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.tokenizer_max_texts = tokenizer_max_texts
        self.tokenizer: Any = None
        self.pairs: dict[str, list[Pair]] = {}
        self.sets: dict[str, ItemsDataset] = {}

    # ---- raw pairs ----------------------------------------------------------------------------
    def _load_pairs(self) -> dict[str, list[Pair]]:
        if self.pairs:
            return self.pairs
        records = lambda: self._read_files(self.source)  # noqa: E731
        self.pairs = pick_source(self.source, {
            "synthetic": self._synthetic_pairs, "jsonl": records, "csv": records,
            "parallel": self._parallel_pairs, "hf": self._hf_pairs,
        }, "seq2seq")
        if "val" not in self.pairs:
            self.pairs["train"], self.pairs["val"] = hold_out(self.pairs["train"], self.val_fraction, self.seed, contiguous=False)
        return self.pairs

    def _synthetic_pairs(self) -> dict[str, list[Pair]]:
        make = {"summarization": make_summarization, "translation": make_translation}[self.synthetic_task]
        keys = ("document", "summary") if self.synthetic_task == "summarization" else ("source", "target")
        return {
            split: [(f"synthetic:{split}:{i}", (d[keys[0]], d[keys[1]])) for i, d in enumerate(make(n, self.seed + 1000 * offset))]
            for offset, (split, n) in enumerate(sorted(self.synthetic_sizes.items()))
        }

    def _read_files(self, source: str) -> dict[str, list[Pair]]:
        suffixes = RECORD_SUFFIXES[source]
        return {split: [pair for file in files for pair in self._read_records(file)]
                for split, files in split_files(**self.paths, suffixes=suffixes).items()}

    def _read_records(self, file: Path) -> list[Pair]:
        pairs: list[Pair] = []
        for where, record in read_records(file, self.on_error):
            if isinstance(record, Skipped):
                pairs.append((where, record))
                continue
            try:
                require_columns(where, record, self.columns, ("source_column", "target_column"))
            except DataError as err:
                if self.on_error != "skip":
                    raise
                pairs.append((where, Skipped(where, str(err).split(": ", 1)[-1])))
                continue
            pairs.append((where, (str(record[self.columns[0]]), str(record[self.columns[1]]))))
        return pairs

    def _parallel_pairs(self) -> dict[str, list[Pair]]:
        """Split prefixes (``<dir>/train``) from data.path or the explicit *_path keys."""
        src_lang, tgt_lang = self.langs
        prefixes: dict[str, Path] = {}
        if self.paths["path"]:
            files = split_files(self.paths["path"], None, None, None, suffixes=(f".{src_lang}",))
            prefixes = {split: found[0].with_suffix("") for split, found in files.items()}
        prefixes.update({split: Path(p) for split, p in explicit_paths(
            self.paths["train_path"], self.paths["val_path"], self.paths["test_path"]).items()})
        if "train" not in prefixes:
            raise DataError("data.source=parallel needs data.path or data.train_path (a prefix: <dir>/train)")
        out = {}
        for split, prefix in prefixes.items():
            out[split] = read_parallel(Path(f"{prefix}.{src_lang}"), Path(f"{prefix}.{tgt_lang}"), self.on_error)
        return out

    def _hf_pairs(self) -> dict[str, list[Pair]]:
        from headstart.data.sources.hf import load_hf_splits

        name = require_hf_name(self.hf["name"])
        tables = load_hf_splits(name, self.hf["subset"], self.hf["splits"], self.val_fraction, self.seed)
        out: dict[str, list[Pair]] = {}
        for split, table in tables.items():
            for column in self.columns:
                if column.split(".")[0] not in table.column_names:
                    raise DataError(f"{name}[{split}]: no column '{column}' (columns: {table.column_names})")
            pairs: list[Pair] = []
            for i, row in enumerate(table):
                where = f"{name}[{split}]:{i}"
                src, tgt = (str(field(row, c) or "") for c in self.columns)
                if not src.strip() or not tgt.strip():
                    problem = Skipped(where, f"empty '{self.columns[0] if not src.strip() else self.columns[1]}'")
                    if self.on_error != "skip":
                        raise DataError(str(problem))
                    pairs.append((where, problem))
                    continue
                pairs.append((where, (src, tgt)))
            out[split] = pairs
        return out

    # ---- model hand-off -----------------------------------------------------------------------
    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Take the model's tokenizer, or train one on training sources and targets for a preset."""
        self.spec = dict(spec)
        if spec.get("max_length"):
            self.max_source_length = min(self.max_source_length, int(spec["max_length"]))
            self.max_target_length = min(self.max_target_length, int(spec["max_length"]))
        self.tokenizer, answer = take_or_train(spec, self._tokenizer_texts, int(spec.get("max_length") or 1024))
        return answer

    def _tokenizer_texts(self) -> list[str]:
        """Sources (with their prefix) and targets of the first ``tokenizer_max_texts`` training pairs."""
        pairs = [p for _, p in self._load_pairs()["train"] if not isinstance(p, Skipped)][: self.tokenizer_max_texts]
        if not pairs:
            raise DataError("no training pairs to train a tokenizer on")
        return [self.source_prefix + s for s, _ in pairs] + [t for _, t in pairs]

    def info(self) -> dict[str, Any]:
        return {}

    # ---- tokenized splits ------------------------------------------------------------------------
    def _encode(self, split: str) -> ItemsDataset:
        if split in self.sets:
            return self.sets[split]
        pairs = self._load_pairs()[split]
        good = [(i, p) for i, (_, p) in enumerate(pairs) if not isinstance(p, Skipped)]
        items: list[Any] = [p for _, p in pairs if isinstance(p, Skipped)]
        for start in range(0, len(good), 1000):
            chunk = good[start : start + 1000]
            sources = [self.source_prefix + s for _, (s, _) in chunk]
            src = self.tokenizer(sources, max_length=self.max_source_length, truncation=True)["input_ids"]
            tgt = self.tokenizer(text_target=[t for _, (_, t) in chunk], max_length=self.max_target_length, truncation=True)["input_ids"]
            for (index, (s, t)), s_ids, t_ids in zip(chunk, src, tgt):
                items.append({"input_ids": s_ids, "labels": t_ids, "index": index, "source": s, "target": t})
        # skipped pairs ride on kept ones: a batch of only skipped pairs would be empty
        self.sets[split] = ItemsDataset(ride_along(items, split))
        return self.sets[split]

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError("configure(spec) must run before setup: the tokenizer comes from the model")
        self.collate = Seq2SeqCollator(self.pad_id)
        if stage in (None, "fit", "validate", "test"):
            self.train_set = self._encode("train")
            self.val_set = self._encode("val")
            if "test" in self._load_pairs():
                self.test_set = self._encode("test")

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def batch_sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        """Length-grouped batches (sorted by length in evaluation), split across DDP ranks."""
        if not self.length_grouping or not isinstance(dataset, ItemsDataset) or dataset is self.predict_set:
            return None
        lengths = [0 if isinstance(x, Skipped) else len(x["input_ids"]) + len(x["labels"]) for x in dataset.items]
        world, rank = self.world
        return LengthGroupedBatchSampler(
            lengths,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            drop_last=self.drop_last and train,
            num_replicas=world,
            rank=rank,
            bucket_size_multiplier=self.bucket_size_multiplier,
        )

    # ---- prediction ---------------------------------------------------------------------------
    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Documents or sentences: a .txt file (one per line) or JSONL/CSV with ``source_column``."""
        self.predict_set = ItemsDataset(read_prompts(inputs, (self.columns[0], "text", "source"), self.on_error, key="source_column"))
        self.collate_predict = SourceCollator(self.tokenizer, self.source_prefix, self.max_source_length)

    def predict_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(
            self.predict_set, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collate_predict
        )


class SourceCollator(PromptCollator):
    """Sources -> right-padded encoder inputs with the tokenizer's own special tokens (+ texts)."""

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        texts = [s["text"] for s in kept]
        encoded = self.tokenizer(
            [self.prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "texts": texts, "_skipped": skipped}
