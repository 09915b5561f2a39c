"""Sentence pairs for next-sentence prediction, as BERT's ``create_pretraining_data.py`` makes them.

A shard written with ``segmenting="sentence"`` holds one segment per sentence. Each document
is cut into chunks of whole sentences of about ``max_tokens`` tokens (10% of chunks aim
shorter, ``short_seq_prob``, so the model also sees short inputs). Item ``i``, drawn from a
generator seeded by (seed, i):

* A = the chunk's first ``a_end`` sentences (``a_end`` uniform in 1 .. n-1);
* half the time B = the chunk's remaining sentences (``is_next = 1``); otherwise B = a run of
  sentences from another random document, as long as the room left (``is_next = 0``). A chunk
  of one sentence (a one-sentence document) can only have a random B;
* the pair is truncated to ``max_tokens`` by trimming the longer segment, at its front or back
  at random (BERT's ``truncate_seq_pair``).

``max_tokens`` is the block size less the collator's 3 special tokens ([CLS] A [SEP] B [SEP]).
The chunk index (three ints per chunk) is built once in memory; the tokens stay on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from headstart.data.errors import Skipped
from headstart.data.token_shards import TokenShard


def truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """Trim the longer of ``a`` / ``b`` (in place), one token at a time from a random end."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


class SentencePairDataset(Dataset):
    """NSP items ``{"input_ids": A, "pair_ids": B, "is_next": 0|1, "doc_id"}`` (raw ids, no specials)."""

    def __init__(self, shard: TokenShard, max_tokens: int, seed: int = 0, short_seq_prob: float = 0.1) -> None:
        if max_tokens < 2:
            raise ValueError(f"NSP pairs need at least 2 tokens of room, got {max_tokens}")
        self.shard, self.max_tokens, self.seed = shard, max_tokens, seed
        self.chunks, self.targets = self._chunk(np.random.default_rng([seed, 7]), short_seq_prob)
        self.skipped = shard.skipped

    def _chunk(self, rng: np.random.Generator, short_seq_prob: float) -> tuple[np.ndarray, np.ndarray]:
        """(doc, first segment, end segment) per chunk, and each chunk's target length."""
        lengths = self.shard.maps["segments"][:, 1]
        rows, targets = [], []
        for doc in range(self.shard.n_docs):
            lo, hi = self.shard.doc_segments(doc)
            doc_lengths = np.asarray(lengths[lo:hi])
            target = self._target(rng, short_seq_prob)
            start, total = lo, 0
            for k in range(lo, hi):
                total += int(doc_lengths[k - lo])
                # a chunk holds >= 2 sentences where it can, so that it can give a true next pair
                if k == hi - 1 or (total >= target and k > start):
                    rows.append((doc, start, k + 1))
                    targets.append(target)
                    start, total, target = k + 1, 0, self._target(rng, short_seq_prob)
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3), np.asarray(targets, dtype=np.int64)

    def _target(self, rng: np.random.Generator, short_seq_prob: float) -> int:
        return int(rng.integers(2, self.max_tokens + 1)) if rng.random() < short_seq_prob else self.max_tokens

    def __len__(self) -> int:
        return len(self.chunks) + len(self.skipped)

    def _tokens(self, lo: int, hi: int) -> list[int]:
        """Tokens of segments [lo, hi) (sentences of one document: their tokens are contiguous)."""
        if hi <= lo:
            return []
        first, _ = self.shard.segment(lo)
        last, length = self.shard.segment(hi - 1)
        return self.shard.ids(first, last + length).tolist()

    def _random_b(self, rng: np.random.Generator, doc: int, room: int) -> list[int]:
        other = doc
        for _ in range(10):  # BERT's retry: a different document (unless the corpus has one)
            other = int(rng.integers(self.shard.n_docs))
            if other != doc:
                break
        lo, hi = self.shard.doc_segments(other)
        start = int(rng.integers(lo, hi))
        end, total = start, 0
        while end < hi and total < room:
            total += self.shard.segment(end)[1]
            end += 1
        return self._tokens(start, end)

    def __getitem__(self, i: int) -> dict[str, Any] | Skipped:
        if i >= len(self.chunks):
            return self.skipped[i - len(self.chunks)]
        doc, lo, hi = (int(x) for x in self.chunks[i])
        rng = np.random.default_rng([self.seed, i])
        a_end = int(rng.integers(lo + 1, hi)) if hi - lo >= 2 else hi
        is_next = hi - lo >= 2 and rng.random() < 0.5
        a = self._tokens(lo, a_end)
        b = self._tokens(a_end, hi) if is_next else self._random_b(rng, doc, max(1, int(self.targets[i]) - len(a)))
        truncate_pair(a, b, self.max_tokens, rng)
        return {"input_ids": torch.tensor(a, dtype=torch.long), "pair_ids": torch.tensor(b, dtype=torch.long),
                "is_next": int(is_next), "doc_id": doc}
