"""DataModule for text pretraining (masked LM, denoising): documents -> cached token shards -> blocks.

Sources (``data.source``): ``synthetic`` (the agreement grammar of
:func:`~headstart.data.synthetic.text_corpora.make_grammar_documents`), ``text`` (plain text
files or folders; a document is a blank-line separated paragraph, a line or a whole file),
``jsonl`` / ``csv`` (``text_column``), ``hf`` (a ``datasets`` hub name, read streaming, or a
``save_to_disk`` directory, memory-mapped). Splits come from the files' names or
``train_path`` / ``val_path`` / ``test_path`` (:mod:`headstart.data.splits`);
without a validation split the last ``val_fraction`` of the documents is held out (hub data
read streaming: counted in one pass first).

Each split is tokenized once into a :mod:`token shard <headstart.data.token_shards>` under
``cache_dir``, keyed by a hash of the tokenizer, the source (file paths, sizes and mtimes, or
the hub name and split) and the settings; later runs reuse it. Blocks are cut at load time
(``block_size`` less the collator's special tokens), so changing ``block_size`` or the noise
needs no re-tokenizing. Without NSP, blocks run across document boundaries (RoBERTa's
FULL-SENTENCES packing, a separator token between documents); with ``noise.nsp`` the shard
keeps sentences and items are BERT's sentence pairs (:mod:`headstart.data.nsp_pairs`).

The collator comes from the task's noise settings (``data.noise: ${task.noise}``) through
:func:`make_collator`.
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from headstart.data.base import DataModule
from headstart.data.errors import RIDERS, DataError, Skipped
from headstart.data.masking import MLMCollator, special_ids
from headstart.data.nsp_pairs import SentencePairDataset
from headstart.data.text_documents import DocumentStream
from headstart.data.text_lm import ItemsDataset, read_prompts
from headstart.data.token_shards import (
    BlockDataset,
    TokenShard,
    shard_key,
    tokenizer_fingerprint,
    write_shard,
)
from headstart.data.tokenizers import take_or_train

NoiseKind = Literal["mlm", "infilling", "span_corruption", "auto"]


def resolve_noise(noise: dict[str, Any] | None, spec: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
    """``noise`` with ``kind: auto`` (or no noise) resolved from the model: infilling for BART,
    span corruption for T5, masked LM otherwise."""
    noise = dict(noise or {"kind": "auto"})
    kind = noise.get("kind", "auto")
    if kind == "auto":
        family = str(spec.get("model_type") or (spec.get("tokenizer_training") or {}).get("family")
                     or type(tokenizer).__name__).lower()
        kind = "infilling" if "bart" in family else "span_corruption" if "t5" in family else "mlm"
    if kind not in ("mlm", "infilling", "span_corruption"):
        raise DataError(f"noise.kind={kind} is not one of mlm, infilling, span_corruption, auto")
    return {**noise, "kind": kind}


def make_collator(noise: dict[str, Any], tokenizer: Any, **extra: Any) -> Any:
    """The collator for ``noise`` (kind resolved): MLMCollator, InfillingCollator or SpanCorruptionCollator.

    Every key but ``kind`` goes to the constructor; ``extra`` (seed, fixed_per_batch,
    pad_to_multiple_of) only where the constructor takes it and the noise does not set it.
    """
    settings = {k: v for k, v in noise.items() if k != "kind"}
    kind = noise.get("kind")
    if kind == "mlm":
        cls: Any = MLMCollator
    elif kind in ("infilling", "span_corruption"):
        from headstart.data import noising  # written beside this module; imported only when used

        cls = noising.InfillingCollator if kind == "infilling" else noising.SpanCorruptionCollator
    else:
        raise DataError(f"noise.kind={kind} is not one of mlm, infilling, span_corruption (resolve auto first)")
    accepted = inspect.signature(cls).parameters
    settings.update({k: v for k, v in extra.items() if k in accepted and k not in settings})
    return cls(tokenizer, **settings)


class RidingSkips(Dataset):
    """A block / pair dataset whose trailing Skipped markers (items ``count`` on) ride on its examples.

    Standing alone at the end, the markers could fill the last evaluation batch with nothing to
    score (the models fail on an empty batch); riding on example ``j % count`` they still reach
    ``batch['_skipped']`` once per epoch. Other attributes are the wrapped dataset's.
    """

    def __init__(self, data: Dataset, count: int) -> None:
        self.data, self.count = data, count
        self.riders: dict[int, list[Skipped]] = {}
        for j, i in enumerate(range(count, len(data))):  # type: ignore[arg-type]
            self.riders.setdefault(j % count, []).append(data[i])

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        item = self.data[i]
        return {**item, RIDERS: self.riders[i]} if i in self.riders else item

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "count", "riders"):  # not yet set (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.data, name)


class TextPretrainingDataModule(DocumentStream, DataModule):
    """Text pretraining data from synthetic, text, jsonl/csv or hf documents (see module docstring).

    noise: the task's noise settings (``kind`` + the collator's keys; ``nsp`` for sentence pairs).
    block_size: tokens per model input, special tokens included (capped by the model's positions).
    cache_dir: where token shards are written (default ``~/.cache/headstart/token_shards``).
    tokenize_workers: processes tokenizing (null: min(4, cpus); 0 or 1: in this process).
    short_seq_prob: NSP only: share of pairs aiming shorter than the block (BERT: 0.1).
    tokenizer_max_texts: documents a preset's tokenizer is trained on (streamed, first N).
    """

    def __init__(
        self,
        noise: dict[str, Any] | None = None,
        source: Literal["synthetic", "text", "jsonl", "csv", "hf"] = "synthetic",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.05,
        block_size: int = 128,
        document_split: Literal["paragraph", "line", "file"] = "paragraph",
        text_column: str = "text",
        synthetic_sizes: dict[str, int] | None = None,
        synthetic_sentences: Sequence[int] = (3, 6),
        hf_name: str | None = None,
        hf_subset: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        cache_dir: str | None = None,
        tokenize_workers: int | None = None,
        tokenize_chunk_docs: int = 512,
        short_seq_prob: float = 0.1,
        tokenizer_max_texts: int = 50000,
        pad_to_multiple_of: int | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.noise_cfg = dict(noise) if noise else None
        self.source = source
        self.paths = {"path": path, "train_path": train_path, "val_path": val_path, "test_path": test_path}
        self.val_fraction, self.block_size, self.document_split = val_fraction, block_size, document_split
        self.text_column = text_column
        self.synthetic_sizes = dict(synthetic_sizes or {"train": 2000, "val": 200})
        self.synthetic_sentences = tuple(synthetic_sentences)
        self.hf = {"name": hf_name or path, "subset": hf_subset,
                   "splits": dict(hf_splits or {"train": "train", "val": "validation", "test": "test"})}
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "headstart" / "token_shards")
        self.tokenize_workers = min(4, os.cpu_count() or 1) if tokenize_workers is None else tokenize_workers
        self.tokenize_chunk_docs, self.short_seq_prob = tokenize_chunk_docs, short_seq_prob
        self.tokenizer_max_texts, self.pad_to_multiple_of = tokenizer_max_texts, pad_to_multiple_of
        self.tokenizer: Any = None
        self.noise: dict[str, Any] = {}
        self.shards: dict[str, TokenShard] = {}
        self._splits: dict[str, Any] | None = None
        self._counts: dict[str, int] = {}

    # ---- model hand-off ------------------------------------------------------------------------
    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Take the model's tokenizer, or train one for a preset on the (streamed) training text."""
        self.spec = dict(spec)
        if spec.get("max_length"):
            self.block_size = min(self.block_size, int(spec["max_length"]))
        max_length = int(spec.get("max_length") or 512)

        def key(settings: dict[str, Any]) -> str:  # the training data and settings
            return shard_key(**self.source_identity("train"), settings=settings, max_texts=self.tokenizer_max_texts,
                             max_length=max_length)

        def texts() -> Iterator[str]:  # the first tokenizer_max_texts documents, streamed
            return itertools.islice((t for _, t in self.iter_docs("train") if isinstance(t, str)), self.tokenizer_max_texts)

        # A preset's tokenizer is cached beside the shards, keyed by the training data and settings:
        # the next run gets the very same vocabulary and so reuses the shards instead of tokenizing again.
        self.tokenizer, answer = take_or_train(spec, texts, max_length, cache_dir=self.cache_dir, cache_key=key)
        self.noise = resolve_noise(self.noise_cfg, spec, self.tokenizer)
        return answer

    def info(self) -> dict[str, Any]:
        tok = self._require_tokenizer()
        return {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "mask_token_id": tok.mask_token_id,
                "special_ids": sorted(special_ids(tok)), "noise": dict(self.noise)}

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise RuntimeError("configure(spec) must run first: the tokenizer comes from the model")
        return self.tokenizer

    # ---- shards --------------------------------------------------------------------------------
    @property
    def nsp(self) -> bool:
        return bool(self.noise.get("nsp", False))

    @property
    def separator_id(self) -> int | None:
        tok = self._require_tokenizer()
        return tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id

    def shard_dir(self, split: str) -> Path:
        """Where ``split``'s shard lives: a hash of tokenizer, source and settings."""
        key = shard_key(
            tokenizer=tokenizer_fingerprint(self._require_tokenizer()), **self.source_identity(split),
            separator=self.separator_id, segmenting="sentence" if self.nsp else "document",
        )
        return self.cache_dir / f"{split}-{key}"

    def build_shard(self, split: str) -> TokenShard:
        """Tokenize ``split`` into its shard (or find it in the cache) and open it."""
        if split not in self.shards:
            directory = write_shard(
                self.shard_dir(split), self.iter_docs(split), self.tokenizer, self.separator_id,
                segmenting="sentence" if self.nsp else "document", workers=self.tokenize_workers,
                chunk_docs=self.tokenize_chunk_docs, description=f"{self.source} {split}",
            )
            self.shards[split] = TokenShard(directory)
        return self.shards[split]

    def prepare_data(self) -> None:
        """Tokenize every split once (Lightning calls this on one process per node before setup)."""
        if self.tokenizer is not None:
            for split in self.split_names():
                self.build_shard(split)

    # ---- datasets and collators ----------------------------------------------------------------
    def make_collator(self, evaluation: bool) -> Any:
        return make_collator(self.noise, self._require_tokenizer(), seed=self.seed, fixed_per_batch=evaluation,
                             pad_to_multiple_of=self._multiple())

    def _multiple(self) -> int:
        if self.pad_to_multiple_of is not None:
            return int(self.pad_to_multiple_of)
        precision = str(getattr(self.trainer, "precision", "32")) if self.trainer is not None else "32"
        return 8 if "16" in precision else 1

    def dataset(self, split: str) -> Dataset:
        shard = self.build_shard(split)
        room = self.block_size - int(self.collate.special_tokens_per_block)
        if room < 2:
            raise DataError(f"data.block_size={self.block_size} leaves no room beside the special tokens")
        if self.nsp:
            data: Dataset = SentencePairDataset(shard, room, self.seed, self.short_seq_prob)
            count = len(data.chunks)
        else:
            data = BlockDataset(shard, room, keep_last=split != "train")
            count = data.n_blocks
        if count == 0:
            raise DataError(f"{split} split has {shard.n_tokens} tokens ({shard.meta['n_skipped']} documents "
                            f"skipped): too few for one block of {room} tokens (lower data.block_size)")
        return RidingSkips(data, count)

    def setup(self, stage: str | None = None) -> None:
        self._require_tokenizer()
        self.collate = self.make_collator(evaluation=False)
        self.eval_collate = self.make_collator(evaluation=True)
        if stage in (None, "fit", "validate", "test"):
            self.train_set = self.dataset("train")
            self.val_set = self.dataset("val")
            if "test" in self.split_names():
                self.test_set = self.dataset("test")

    def _eval_loader(self, make: Any) -> Any:
        """An evaluation loader that masks each batch the same way every epoch."""
        train_collate, self.collate = self.collate, self.eval_collate
        try:
            return make()
        finally:
            self.collate = train_collate

    def val_dataloader(self) -> Any:
        return self._eval_loader(super().val_dataloader)

    def test_dataloader(self) -> Any:
        return self._eval_loader(super().test_dataloader)

    # ---- prediction (fill-mask) ----------------------------------------------------------------
    def set_predict_inputs(self, inputs: str | Sequence[str]) -> None:
        """Texts (a .txt file, one per line, or JSONL/CSV ``text_column``), tokenized with special
        tokens and NOT masked: write the tokenizer's mask token where predictions are wanted."""
        self.predict_set = ItemsDataset(read_prompts(inputs, (self.text_column,), self.on_error, key="text_column"))
        self.collate_predict = TextCollator(self._require_tokenizer(), self.block_size)

    def predict_dataloader(self) -> Any:
        import torch

        return torch.utils.data.DataLoader(self.predict_set, batch_size=self.eval_batch_size, shuffle=False,
                                           collate_fn=self.collate_predict)


class TextCollator:
    """{"text"} samples -> input_ids / attention_mask (/ token_type_ids) [B, L] + ``texts``, in order."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        from headstart.data.errors import split_skipped

        kept, skipped = split_skipped(samples)
        texts = [s["text"] for s in kept]
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {**dict(encoded), "texts": texts, "_skipped": skipped}
