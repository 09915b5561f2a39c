"""DataModule for causal language modelling: documents -> tokens -> packed blocks of ``block_size``.

Sources (``data.source``): ``synthetic`` (a small agreement grammar), ``text`` (plain text files;
documents are paragraphs, lines or whole files), ``jsonl`` / ``csv`` (``text_column``), ``hf``
(a ``datasets`` name or ``save_to_disk`` dir). Documents are tokenized without special tokens and
packed with an EOS after each one, so no training position is padding; the evaluation splits
keep their last partial block (padded, its padding labelled -100), so every token is scored.

Prediction reads prompts (one per line, or JSONL with ``prompt_column``), each preceded by EOS
(as a document start is in training), left-padded for generation, in input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from headstart.data.base import DataModule
from headstart.data.errors import DataError, Skipped, ride_along, split_skipped
from headstart.data.packing import pack_documents
from headstart.data.sources.text import RECORD_SUFFIXES, field, read_lines, read_records, record_texts, require_columns
from headstart.data.splits import hold_out, pick_source, require_hf_name, split_files
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.tokenizers import take_or_train

Doc = tuple[str, "str | Skipped"]  # (where, text)
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".tokens", ".md")


class ItemsDataset(Dataset):
    """A list of ready examples (dicts) and Skipped markers (collated into ``_skipped``)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def collate_blocks(samples: list[Any]) -> dict[str, Any]:
    """Stack packed blocks: input_ids, labels, attention_mask [B, block_size]."""
    kept, skipped = split_skipped(samples)
    if not kept:
        empty = torch.zeros(0, 1, dtype=torch.long)
        return {"input_ids": empty, "labels": empty, "attention_mask": empty, "_skipped": skipped}
    batch = {key: torch.stack([s[key] for s in kept]) for key in ("input_ids", "labels", "attention_mask")}
    batch["_skipped"] = skipped
    return batch


def paragraphs(lines: list[tuple[str, str | Skipped]], mode: Literal["paragraph", "line", "file"]) -> list[Doc]:
    """Group (where, line) pairs into documents: blank-line separated paragraphs, lines, or all."""
    return list(iter_paragraphs(lines, mode))


def iter_paragraphs(lines: Iterable[tuple[str, str | Skipped]], mode: Literal["paragraph", "line", "file"]) -> Iterator[Doc]:
    """:func:`paragraphs` as a generator, for streaming a file larger than memory (``file`` mode
    still holds one whole file: it is one document)."""
    if mode == "line":
        yield from ((w, t) for w, t in lines if isinstance(t, Skipped) or t.strip())
        return
    where, current = None, []
    for w, text in lines:
        if isinstance(text, Skipped):
            yield w, text
            continue
        if mode == "paragraph" and not text.strip():
            if current:
                yield where, "\n".join(current)
            where, current = None, []
            continue
        where = where or w
        current.append(text)
    if current:
        yield where, "\n".join(current)


class TextLMDataModule(DataModule):
    """Packed causal-LM blocks from synthetic, text, jsonl/csv or hf documents (see module docstring)."""

    def __init__(
        self,
        source: Literal["synthetic", "text", "jsonl", "csv", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        block_size: int = 128,
        document_split: Literal["paragraph", "line", "file"] = "paragraph",
        text_column: str = "text",
        prompt_column: str = "prompt",
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_sentences: Sequence[int] = (3, 6),
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        tokenizer_max_texts: int = 50000,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.source = source
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.val_fraction = val_fraction
        self.block_size = block_size
        self.document_split = document_split
        self.text_column = text_column
        self.prompt_column = prompt_column
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 200})
        self.synthetic_sentences = tuple(synthetic_sentences)
        self.hf = {"name": hf_name or path, "subset": hf_subset,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.tokenizer_max_texts = tokenizer_max_texts
        self.collate = collate_blocks
        self.tokenizer: Any = None
        self.docs: dict[str, list[Doc]] = {}
        self.blocks: dict[str, ItemsDataset] = {}

    # ---- raw documents -----------------------------------------------------------------------
    def _load_docs(self) -> dict[str, list[Doc]]:
        if self.docs:
            return self.docs
        self.docs = pick_source(self.source, {
            "synthetic": self._synthetic_docs, "text": self._read_files, "jsonl": self._read_files, "csv": self._read_files,
            "hf": self._hf_docs,
        }, "text generation")
        if "val" not in self.docs:
            self.docs["train"], self.docs["val"] = hold_out(self.docs["train"], self.val_fraction, self.seed, contiguous=True)
        return self.docs

    def _synthetic_docs(self) -> dict[str, list[Doc]]:
        low, high = self.synthetic_sentences
        docs = {}
        for offset, (split, n) in enumerate(sorted(self.synthetic_sizes.items())):
            made = make_grammar_documents(n, self.seed + 1000 * offset, low, high)
            docs[split] = [(f"synthetic:{split}:{i}", d["text"]) for i, d in enumerate(made)]
        return docs

    def _read_files(self) -> dict[str, list[Doc]]:
        suffixes = {"text": TEXT_SUFFIXES, **RECORD_SUFFIXES}[self.source]
        return {split: [doc for file in files for doc in self._read_file(file)]
                for split, files in split_files(**self.paths, suffixes=suffixes).items()}

    def _read_file(self, file: Path) -> list[Doc]:
        records = lambda: list(record_texts(file, self.text_column, self.on_error))  # noqa: E731
        return pick_source(self.source, {
            "text": lambda: paragraphs(list(read_lines(file, self.on_error, skip_blank=False)), self.document_split),
            "jsonl": records, "csv": records,
        }, "text generation")

    def _hf_docs(self) -> dict[str, list[Doc]]:
        from headstart.data.sources.hf import load_hf_splits

        tables = load_hf_splits(require_hf_name(self.hf["name"]), self.hf["subset"], self.hf["splits"], self.val_fraction, self.seed)
        out = {}
        for split, table in tables.items():
            if self.text_column not in table.column_names:
                raise DataError(f"{self.hf['name']}[{split}]: no column '{self.text_column}' (columns: {table.column_names})")
            texts = table[self.text_column]
            out[split] = [(f"{self.hf['name']}[{split}]:{i}", str(t)) for i, t in enumerate(texts) if str(t).strip()]
        return out

    # ---- model hand-off ----------------------------------------------------------------------
    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Take the model's tokenizer, or train one on the training documents for a preset."""
        self.spec = dict(spec)
        if spec.get("max_length"):
            self.block_size = min(self.block_size, int(spec["max_length"]))
        self.tokenizer, answer = take_or_train(spec, self._tokenizer_texts, int(spec.get("max_length") or 1024))
        return answer

    def _tokenizer_texts(self) -> list[str]:
        texts = [t for _, t in self._load_docs()["train"] if isinstance(t, str)][: self.tokenizer_max_texts]
        if not texts:
            raise DataError("no training documents to train a tokenizer on")
        return texts

    def info(self) -> dict[str, Any]:
        return {}

    # ---- packing ------------------------------------------------------------------------------
    def _pack(self, split: str) -> ItemsDataset:
        if split in self.blocks:
            return self.blocks[split]
        docs = self._load_docs()[split]
        texts = [t for _, t in docs if isinstance(t, str)]
        skipped = [t for _, t in docs if isinstance(t, Skipped)]
        ids = []
        for start in range(0, len(texts), 1000):
            ids += self.tokenizer(texts[start : start + 1000], add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        packed = pack_documents(
            ids, self.block_size, eos, remainder="drop" if split == "train" else "pad", pad_id=self.pad_id
        )
        if not packed["input_ids"]:
            total = sum(len(x) + 1 for x in ids)
            raise DataError(f"{split} split has {total} tokens, fewer than data.block_size={self.block_size}")
        tensors = {k: torch.tensor(v, dtype=torch.long) for k, v in packed.items()}
        items: list[Any] = [{k: tensors[k][i] for k in tensors} for i in range(len(tensors["input_ids"]))]
        # skipped documents ride on blocks: a batch of only skipped documents would be empty
        self.blocks[split] = ItemsDataset(ride_along(items + skipped, split))
        return self.blocks[split]

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError("configure(spec) must run before setup: the tokenizer comes from the model")
        if stage in (None, "fit", "validate", "test"):
            self.train_set = self._pack("train")
            self.val_set = self._pack("val")
            if "test" in self._load_docs():
                self.test_set = self._pack("test")

    # ---- prediction ---------------------------------------------------------------------------
    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Prompts: a .txt file (one per line) or JSONL/CSV with ``prompt_column`` (or ``text_column``)."""
        prompts = read_prompts(inputs, (self.prompt_column, self.text_column), self.on_error, allow_empty=True, key="prompt_column")
        self.predict_set = ItemsDataset(prompts)
        self.collate_predict = PromptCollator(self.tokenizer, self.tokenizer.eos_token)

    def predict_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(
            self.predict_set, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collate_predict
        )


class PromptCollator:
    """Prompts -> left-padded input_ids / attention_mask [B, L] (+ the prompt strings)."""

    def __init__(self, tokenizer: Any, prefix: str = "", max_length: int | None = None) -> None:
        self.tokenizer, self.prefix, self.max_length = tokenizer, prefix, max_length

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        texts = [s["text"] for s in kept]
        encoded = self.tokenizer(
            [self.prefix + t for t in texts], add_special_tokens=False, padding=True, padding_side="left",
            truncation=self.max_length is not None, max_length=self.max_length, return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "texts": texts,
                "_skipped": skipped}


def read_prompts(inputs: str | Sequence[str], columns: Sequence[str], on_error: Any, allow_empty: bool = False,
                 key: str | None = None) -> list[Any]:
    """{"text"} per line of .txt files, or per record of .jsonl/.csv files (first of ``columns`` present).

    An empty record value is an error naming file and line unless ``allow_empty`` (an LM prompt
    may be empty: generation then starts a new document)."""
    files = [inputs] if isinstance(inputs, str) else list(inputs)
    out: list[Any] = []
    for file in files:
        if Path(file).suffix.lower() in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
            for where, record in read_records(file, on_error):
                if isinstance(record, Skipped):
                    out.append(record)
                    continue
                column = next((c for c in columns if c in record), columns[0])
                try:
                    if not allow_empty or column not in record:
                        require_columns(where, record, [column], (key,))
                except DataError as err:
                    if on_error != "skip":
                        raise
                    out.append(Skipped(where, str(err)))
                    continue
                out.append({"text": str(field(record, column))})
        else:
            out += [t if isinstance(t, Skipped) else {"text": t} for _, t in read_lines(file, on_error)]
    if not out:
        raise DataError(f"{inputs}: no inputs to predict on")
    return out
