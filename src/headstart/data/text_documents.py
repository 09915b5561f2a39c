"""The documents a text-pretraining datamodule reads, streamed one at a time (mixin).

:class:`DocumentStream` resolves each split's source through the table of ``data.source``
readers (synthetic grammar, text / jsonl / csv files, ``datasets`` hub or ``save_to_disk``),
holds out the last ``val_fraction`` of the training documents when there is no validation
split (counted in one pass first), and names what a split is for the token-shard cache key
(:meth:`DocumentStream.source_identity`). It is used by
:class:`~headstart.data.pretraining_text.TextPretrainingDataModule`, whose ``__init__`` sets the
attributes read here: ``source``, ``paths``, ``hf``, ``text_column``, ``document_split``,
``synthetic_sizes``, ``synthetic_sentences``, ``val_fraction``, ``seed``, ``on_error``,
``_splits`` (None) and ``_counts`` ({}).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headstart.data.errors import DataError, Skipped
from headstart.data.sources.text import RECORD_SUFFIXES, read_lines, record_texts
from headstart.data.splits import pick_source, require_hf_name, split_files
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.text_lm import TEXT_SUFFIXES, iter_paragraphs
from headstart.data.token_shards import Doc, files_fingerprint

SUFFIXES = {"text": TEXT_SUFFIXES, **RECORD_SUFFIXES}


class DocumentStream:
    """Split sources and streamed documents of a text-pretraining datamodule (see module doc)."""

    source: str
    paths: dict[str, str | None]
    hf: dict[str, Any]
    text_column: str
    document_split: str
    synthetic_sizes: dict[str, int]
    synthetic_sentences: tuple[int, int]
    val_fraction: float
    seed: int
    on_error: str
    _splits: dict[str, Any] | None
    _counts: dict[str, int]

    # ---- documents, streamed -------------------------------------------------------------------
    def split_names(self) -> list[str]:
        """The splits this source has ("train", "val" and maybe "test")."""
        return sorted(self._split_sources())

    def _split_sources(self) -> dict[str, Any]:
        """Split -> what it reads (files, an hf split name, a synthetic size); "val" may be held out."""
        if self._splits is not None:
            return self._splits
        files = lambda: dict(split_files(**self.paths, suffixes=SUFFIXES[self.source]))  # noqa: E731
        splits: dict[str, Any] = pick_source(self.source, {
            "synthetic": lambda: dict(self.synthetic_sizes), "text": files, "jsonl": files, "csv": files,
            "hf": self._hf_split_sources,
        }, "pretraining")
        if "train" not in splits:
            raise DataError("no training split configured")
        if "val" not in splits:
            splits["val"] = "held-out"
        self._splits = splits
        return splits

    def _hf_split_sources(self) -> dict[str, str]:
        """Our split -> the dataset's split name; one the dataset lacks is left out (val is then held out)."""
        require_hf_name(self.hf["name"])
        splits = {ours: theirs for ours, theirs in self.hf["splits"].items() if theirs is not None}
        available = self._hf_split_names()
        return {k: v for k, v in splits.items() if k == "train" or available is None or v in available}

    def iter_docs(self, split: str) -> Iterator[Doc]:
        """(where, text or Skipped) of ``split``'s documents, one at a time."""
        sources = self._split_sources()
        if sources.get("val") == "held-out" and split in ("train", "val"):
            total = self._count("train")
            n_val = max(1, int(round(total * self.val_fraction)))
            if not 0 < self.val_fraction < 1 or total < 2:
                raise DataError(f"{total} training document(s) and data.val_fraction={self.val_fraction}: "
                                "cannot hold out a validation split (give data.val_path)")
            lo, hi = (0, total - n_val) if split == "train" else (total - n_val, total)
            return itertools.islice(self._raw_docs("train"), lo, hi)
        return self._raw_docs(split)

    def _count(self, split: str) -> int:
        if split not in self._counts:
            self._counts[split] = sum(1 for _ in self._raw_docs(split))
        return self._counts[split]

    def _raw_docs(self, split: str) -> Iterator[Doc]:
        source = self._split_sources()[split]
        files = lambda: (doc for file in source for doc in self._file_docs(Path(file)))  # noqa: E731
        return pick_source(self.source, {
            "synthetic": lambda: self._synthetic_docs(split, int(source)), "hf": lambda: self._hf_docs(split, source),
            "text": files, "jsonl": files, "csv": files,
        }, "pretraining")

    def _synthetic_docs(self, split: str, n: int) -> Iterator[Doc]:
        offset = sorted(self.synthetic_sizes).index(split)
        low, high = self.synthetic_sentences
        made = make_grammar_documents(n, self.seed + 1000 * offset, low, high)
        return ((f"synthetic:{split}:{i}", d["text"]) for i, d in enumerate(made))

    def _file_docs(self, file: Path) -> Iterator[Doc]:
        """Documents of one file; a file without any is an error naming it (or a counted skip)."""
        found = False
        for doc in self._read_file(file):
            found = True
            yield doc
        if not found:
            if self.on_error != "skip":
                raise DataError(f"{file}: empty file (no text)")
            yield str(file), Skipped(str(file), "empty file (no text)")

    def _read_file(self, file: Path) -> Iterator[Doc]:
        records = lambda: record_texts(file, self.text_column, self.on_error)  # noqa: E731
        return pick_source(self.source, {
            "text": lambda: iter_paragraphs(read_lines(file, self.on_error, skip_blank=False), self.document_split),
            "jsonl": records, "csv": records,
        }, "pretraining")

    def _hf_split_names(self) -> list[str] | None:
        """The dataset's split names (None: unknown, e.g. the hub is unreachable; reading will say)."""
        import datasets

        name = self.hf["name"]
        try:
            if Path(name).is_dir():
                loaded = datasets.load_from_disk(name)
                return list(loaded) if isinstance(loaded, datasets.DatasetDict) else ["train"]
            return list(datasets.get_dataset_split_names(name, self.hf["subset"]))
        except Exception:  # hub/network failures surface as many exception types
            return None

    def _hf_docs(self, split: str, theirs: str) -> Iterator[Doc]:
        """Documents of an hf split: a save_to_disk directory (memory-mapped) or the hub, streaming."""
        import datasets

        name = self.hf["name"]
        try:
            if Path(name).is_dir():
                loaded = datasets.load_from_disk(name)
                table = loaded[theirs] if isinstance(loaded, datasets.DatasetDict) else loaded
                if not isinstance(loaded, datasets.DatasetDict) and theirs != self.hf["splits"].get("train"):
                    raise KeyError(theirs)
            else:
                table = datasets.load_dataset(name, self.hf["subset"], split=theirs, streaming=True)
        except KeyError as err:
            raise DataError(f"{name}: no split '{theirs}' (set data.hf_splits)") from err
        except Exception as err:  # hub/network failures surface as many exception types
            first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise DataError(f"could not load dataset '{name}' ({first}); without network access point "
                            "data.hf_name at a local directory written by datasets' save_to_disk") from err
        columns = table.column_names or []
        if columns and self.text_column not in columns:
            raise DataError(f"{name}[{theirs}]: no column '{self.text_column}' (columns: {columns})")
        rows = table.select_columns([self.text_column]).iter(batch_size=1000)
        index = 0
        for batch in rows:
            for text in batch[self.text_column]:
                if text is not None and str(text).strip():
                    yield f"{name}[{theirs}]:{index}", str(text)
                index += 1

    def source_identity(self, split: str) -> dict[str, Any]:
        """What ``split``'s documents are (files with sizes and mtimes, hf name and split, synthetic seed)."""
        source = self._split_sources()[split]
        held_out = self._split_sources()["val"] == "held-out" and split in ("train", "val")
        train_or_own = self._split_sources()["train"] if held_out else source
        files = lambda: {"files": files_fingerprint(train_or_own), "document_split": self.document_split}  # noqa: E731
        what = pick_source(self.source, {
            "synthetic": lambda: {"n": source, "seed": self.seed, "sentences": self.synthetic_sentences},
            "hf": lambda: {"name": self.hf["name"], "subset": self.hf["subset"], "split": train_or_own,
                           "files": files_fingerprint([self.hf["name"]]) if Path(self.hf["name"]).is_dir() else None},
            "text": files, "jsonl": files, "csv": files,
        }, "pretraining")
        return {"source": self.source, "what": what, "split": split, "column": self.text_column,
                "held_out": self.val_fraction if held_out else None, "on_error": self.on_error}
