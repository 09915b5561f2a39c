"""Token shards: a corpus tokenized once into memory-mapped arrays on disk, read in blocks.

Layout of one shard directory (one per split, named by a hash of what produced it)::

    tokens.bin    uint16 (vocab < 65536) or uint32: every document's tokens, each document
                  followed by one separator id (the tokenizer's [SEP] / </s>)
    segments.bin  int64 [n_segments, 2]: (first token, length) of each segment, a segment
                  being a whole document or, for NSP, one sentence; separators excluded
    docs.bin      int64 [n_docs + 1, 2]: (first segment, first token) of each document, then
                  (n_segments, n_tokens)
    meta.json     counts, dtype, separator, and the documents skipped under on_error=skip

Writing streams: documents arrive from an iterator in chunks, chunks are tokenized (in
``workers`` processes, in order, at most ``2 * workers`` chunks in flight) and appended to the
files, so neither the corpus text nor its ids are ever held whole. The directory is written
under a temporary name and renamed when complete, so a killed run leaves no half cache and
concurrent writers (DDP ranks) cannot corrupt one another. A second run finds ``meta.json``
and reuses the shard.

Reading (:class:`TokenShard`) opens the maps lazily in each process (they are dropped when
pickled to dataloader workers). :class:`BlockDataset` cuts fixed-length blocks straight across
the token stream, crossing document boundaries (RoBERTa's FULL-SENTENCES packing; the
separator marks the boundary); :class:`SentencePairDataset` builds BERT's NSP pairs from
sentence segments.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset

from headstart.data import tokenize_worker
from headstart.data.errors import DataError, Skipped

Doc = tuple[str, "str | Skipped"]  # (where, text)
Segmenting = Literal["document", "sentence"]
FORMAT_VERSION = 1
MAX_SKIPS_KEPT = 1000
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ---- cache key ----------------------------------------------------------------------------------
def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocab, merges, normalizer, special tokens)."""
    kind, data = tokenizer_worker_payload(tokenizer)
    if kind == "json":
        definition = json.loads(data)
        for transient in ("truncation", "padding"):  # call-time settings, not the tokenization
            definition.pop(transient, None)
        raw = json.dumps(definition, sort_keys=True).encode()
    else:
        raw = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    return hashlib.sha256(raw).hexdigest()


def tokenizer_worker_payload(tokenizer: Any) -> tuple[str, Any]:
    return tokenize_worker.tokenizer_payload(tokenizer)


def files_fingerprint(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, mtime_ns) of each file (of each file under a folder)."""
    out = []
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            out.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    return out


def shard_key(**parts: Any) -> str:
    """A short stable hash of everything that determines a shard's content."""
    text = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---- writing ------------------------------------------------------------------------------------
def split_sentences(text: str) -> list[str]:
    """Sentences of a document: each line, cut after . ! or ? followed by white space."""
    return [s.strip() for line in text.split("\n") for s in _SENTENCE_END.split(line) if s.strip()]


def _chunks(docs: Iterable[Doc], size: int) -> Iterator[list[Doc]]:
    iterator = iter(docs)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _prepare(chunk: list[Doc], segmenting: Segmenting) -> tuple[list[str], list[int], list[Skipped]]:
    """(texts to tokenize, segments per kept document, skipped) of one chunk."""
    texts, counts, skipped = [], [], []
    for _where, text in chunk:
        if isinstance(text, Skipped):
            skipped.append(text)
            continue
        parts = split_sentences(text) if segmenting == "sentence" else ([text] if text.strip() else [])
        if parts:
            texts += parts
            counts.append(len(parts))
    return texts, counts, skipped


def _encoded(
    chunks: Iterable[list[Doc]], segmenting: Segmenting, payload: tuple[str, Any], workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray, list[int], list[Skipped], int]]:
    """(flat ids, segment lengths, segments per doc, skipped, n input docs) per chunk, in order."""
    if workers <= 1:
        tokenize_worker.init_worker(payload)
        for chunk in chunks:
            texts, counts, skipped = _prepare(chunk, segmenting)
            yield (*tokenize_worker.encode_texts(texts), counts, skipped, len(chunk))
        return
    start = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    # After fork, the Rust tokenizer must not reuse a thread pool created before it (a known deadlock).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context(start), initializer=tokenize_worker.init_worker, initargs=(payload,)
    ) as pool:
        pending: deque = deque()
        for chunk in chunks:
            texts, counts, skipped = _prepare(chunk, segmenting)
            pending.append((pool.submit(tokenize_worker.encode_texts, texts), counts, skipped, len(chunk)))
            if len(pending) >= 2 * workers:  # bounded: the corpus is never all in flight
                future, *rest = pending.popleft()
                yield (*future.result(), *rest)
        while pending:
            future, *rest = pending.popleft()
            yield (*future.result(), *rest)


def write_shard(
    directory: str | Path,
    docs: Iterable[Doc],
    tokenizer: Any,
    separator_id: int | None,
    segmenting: Segmenting = "document",
    workers: int = 0,
    chunk_docs: int = 512,
    description: str = "",
) -> Path:
    """Tokenize ``docs`` into a shard at ``directory`` (see module docstring); reuse it if present.

    docs: (where, text or Skipped) pairs, consumed once. separator_id: appended after each
    document (None: nothing). segmenting: "sentence" stores one segment per sentence (NSP).
    workers: tokenizing processes (0/1: in this process). Returns ``directory``.
    """
    directory = Path(directory)
    if (directory / "meta.json").is_file():
        rank_zero_info(f"data: reusing cached token shard {directory}{f' ({description})' if description else ''}")
        return directory
    vocab = len(tokenizer)
    dtype = np.uint16 if vocab < 2**16 else np.uint32
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        counts = _write_files(tmp, docs, tokenizer, separator_id, segmenting, workers, chunk_docs, description, dtype)
        meta = {"version": FORMAT_VERSION, "dtype": np.dtype(dtype).name, "vocab_size": vocab,
                "separator_id": separator_id, "segmenting": segmenting, "description": description, **counts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(directory)
        except OSError:  # another process finished the same shard first: keep theirs
            if not (directory / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rank_zero_info(f"data: wrote token shard {directory} ({counts['n_tokens']} tokens, {counts['n_docs']} documents)")
    return directory


def _write_files(
    tmp: Path, docs: Iterable[Doc], tokenizer: Any, separator_id: int | None, segmenting: Segmenting,
    workers: int, chunk_docs: int, description: str, dtype: Any,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    n_tokens = n_segments = n_docs = n_skipped = 0
    skipped: list[list[str]] = []
    sep = np.array([] if separator_id is None else [separator_id], dtype=np.int64)
    progress = tqdm(desc=f"tokenizing {description}".strip(), unit=" docs", disable=not sys.stderr.isatty())
    with (tmp / "tokens.bin").open("wb") as tokens, (tmp / "segments.bin").open("wb") as segments, \
            (tmp / "docs.bin").open("wb") as doc_index:
        for flat, lengths, per_doc, bad, n_in in _encoded(_chunks(docs, chunk_docs), segmenting,
                                                         tokenizer_worker_payload(tokenizer), workers):
            n_skipped += len(bad)
            skipped += [[s.where, s.reason] for s in bad[: max(0, MAX_SKIPS_KEPT - len(skipped))]]
            starts = np.concatenate([[0], np.cumsum(lengths)])
            pieces, seg_rows, doc_rows, seg = [], [], [], 0
            for n_seg in per_doc:
                doc_len = int(starts[seg + n_seg] - starts[seg])
                if doc_len == 0:  # nothing left after tokenizing (e.g. only characters the vocab drops)
                    seg += n_seg
                    continue
                doc_rows.append((n_segments + len(seg_rows), n_tokens))
                for k in range(seg, seg + n_seg):
                    if lengths[k]:
                        seg_rows.append((n_tokens, int(lengths[k])))
                        n_tokens += int(lengths[k])
                pieces += [flat[starts[seg] : starts[seg + n_seg]], sep]
                n_tokens += len(sep)
                seg += n_seg
            if pieces:
                block = np.concatenate(pieces)
                if block.size and block.max() > np.iinfo(dtype).max:
                    raise DataError(f"token id {block.max()} does not fit the shard's {np.dtype(dtype).name}")
                tokens.write(block.astype(dtype).tobytes())
            segments.write(np.asarray(seg_rows, dtype=np.int64).reshape(-1, 2).tobytes())
            doc_index.write(np.asarray(doc_rows, dtype=np.int64).reshape(-1, 2).tobytes())
            n_segments += len(seg_rows)
            n_docs += len(doc_rows)
            progress.update(n_in)
        doc_index.write(np.asarray([[n_segments, n_tokens]], dtype=np.int64).tobytes())
    progress.close()
    return {"n_tokens": n_tokens, "n_segments": n_segments, "n_docs": n_docs, "n_skipped": n_skipped,
            "skipped": skipped}


# ---- reading ------------------------------------------------------------------------------------
class TokenShard:
    """A finished shard, memory-mapped on first use in each process (maps are never pickled)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta: dict[str, Any] = json.loads((self.directory / "meta.json").read_text())
        self._maps: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def _map(self, name: str, dtype: Any, columns: int | None = None) -> np.ndarray:
        path = self.directory / name
        if path.stat().st_size == 0:  # numpy cannot map an empty file
            return np.zeros((0, columns) if columns else 0, dtype=dtype)
        data = np.memmap(path, dtype=dtype, mode="r")
        return data.reshape(-1, columns) if columns else data

    @property
    def maps(self) -> dict[str, np.ndarray]:
        if self._maps is None:
            self._maps = {
                "tokens": self._map("tokens.bin", np.dtype(self.meta["dtype"])),
                "segments": self._map("segments.bin", np.int64, 2),
                "docs": self._map("docs.bin", np.int64, 2),
            }
        return self._maps

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def skipped(self) -> list[Skipped]:
        """The skipped documents, as markers for the collator's ``_skipped`` count (first 1000 named)."""
        named = [Skipped(where, reason) for where, reason in self.meta["skipped"]]
        extra = self.meta["n_skipped"] - len(named)
        return named + [Skipped(f"{self.directory.name}#{i}", "skipped (not named)") for i in range(extra)]

    def ids(self, start: int, end: int) -> torch.Tensor:
        """Tokens [start, end) as a LongTensor (a copy: the map stays read-only)."""
        return torch.from_numpy(np.asarray(self.maps["tokens"][start:end], dtype=np.int64))

    def doc_of(self, position: int) -> int:
        """Index of the document holding token ``position``."""
        starts = self.maps["docs"][:, 1]
        return int(np.searchsorted(starts, position, side="right")) - 1

    def doc_segments(self, doc: int) -> tuple[int, int]:
        """[first, last + 1) segment indices of document ``doc``."""
        rows = self.maps["docs"]
        return int(rows[doc, 0]), int(rows[doc + 1, 0])

    def segment(self, index: int) -> tuple[int, int]:
        """(first token, length) of segment ``index``."""
        start, length = self.maps["segments"][index]
        return int(start), int(length)


class BlockDataset(Dataset):
    """Fixed-length raw blocks cut across the token stream (FULL-SENTENCES packing).

    Item ``i`` is ``{"input_ids": LongTensor[block] (no special tokens; a separator between two
    documents is kept), "doc_id": the document the block starts in}``; after the blocks come the
    shard's skipped documents (Skipped markers, counted by the collator). ``keep_last``: also the
    last, shorter block (evaluation: every token is seen once).
    """

    def __init__(self, shard: TokenShard, block: int, keep_last: bool) -> None:
        if block < 1:
            raise ValueError(f"block length must be >= 1, got {block}")
        self.shard, self.block = shard, block
        full, rest = divmod(shard.n_tokens, block)
        self.n_blocks = full + (1 if keep_last and rest else 0)
        self.skipped = shard.skipped

    def __len__(self) -> int:
        return self.n_blocks + len(self.skipped)

    def __getitem__(self, i: int) -> dict[str, Any] | Skipped:
        if i >= self.n_blocks:
            return self.skipped[i - self.n_blocks]
        start = i * self.block
        end = min(start + self.block, self.shard.n_tokens)
        return {"input_ids": self.shard.ids(start, end), "doc_id": self.shard.doc_of(start)}
