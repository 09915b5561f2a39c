"""Denoising collators for seq2seq pretraining: BART text infilling + sentence permutation, T5 span corruption.

Both take raw token blocks (no special tokens) from the text pretraining datamodule and return
``input_ids`` / ``attention_mask`` [B, S] (the noised encoder input, padded with the tokenizer's
pad id) and ``labels`` [B, T] (the decoder targets, -100 on padding); the seq2seq backbone
builds decoder inputs from the labels (shifted right), as in summarization.

Config shape (``task.noise``, reaching the datamodule as ``data.noise``) is **flat**::

    noise: {kind: auto, mask_ratio: 0.3, poisson_lambda: 3.0, permute_sentences: true,
            random_ratio: 0.0, insert_ratio: 0.0, noise_density: 0.15, mean_span_length: 3.0, seed: 0}

``make_collator`` passes everything but ``kind`` to the chosen collator; each constructor takes its
own family's keys and *names* the other family's keys as ignored parameters (no ``**kwargs``: a
misspelt key is still an error).

BART (``InfillingCollator``, after fairseq's ``DenoisingDataset``):

1. sentence permutation: the block is cut after full-stop tokens (every vocabulary entry whose
   text ends with ".", "!" or "?"; a run of them ends one sentence) and the sentences are
   shuffled (``permute_sentences``: true = all, a float = that fraction, as fairseq's ratio);
2. text infilling on the permuted tokens: span lengths ~ Poisson(``poisson_lambda``) are drawn
   until they cover ``round(mask_ratio * n)`` tokens (the last one trimmed to the budget, as
   fairseq); each span becomes ONE mask token; a length-0 span inserts a mask token. Spans are
   placed uniformly at random, never touching each other (at least one kept token between two
   masks), so every mask token stands for exactly one span. ``random_ratio`` of the mask tokens
   are replaced by random tokens; ``insert_ratio`` inserts that fraction of extra mask/random
   tokens (these lengthen the input: keep it 0 when blocks fill the model's positions);
3. input = ``<s> noised </s>``, labels = ``<s> original block </s>`` (as the BART tokenizer
   makes targets; the decoder starts from ``</s>``).

T5 (``SpanCorruptionCollator``): ``random_spans_noise_mask`` exactly as in the T5 code
(google-research/text-to-text-transfer-transformer, ``preprocessors.py``): round(L * density)
noise tokens (at least 1, at most L-1), round(noise / mean_span_length) spans (at least 1),
noise and non-noise tokens each cut into that many non-empty segments at random, interleaved
non-noise first. Input = non-noise tokens with each noise span replaced by ``<extra_id_k>``
(k = 0, 1, ... in order) + ``</s>``; target = each non-noise span replaced by the same
sentinels, i.e. ``<extra_id_0> span_0 <extra_id_1> span_1 ... </s>`` (no final sentinel: the
mask always ends with noise).

Randomness: each collator draws from its own ``torch.Generator`` seeded with ``seed`` (in a
DataLoader worker, with ``seed`` and the worker's seed, so workers differ and a seeded run
repeats). With ``fixed_per_batch`` (evaluation) each batch's noise depends only on ``seed`` and
the batch's tokens, so validation scores the same noise every epoch. ``pad_to_multiple_of``
rounds the padded lengths up (tensor cores under 16-bit precision).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
from torch.utils.data import get_worker_info

from headstart.data.errors import split_skipped

FULL_STOPS = (".", "!", "?")


class _Seeded:
    """A torch.Generator per process: ``seed`` in the main process, (seed, worker seed) in a worker."""

    def __init__(self, seed: int, fixed_per_batch: bool = False) -> None:
        self.seed = int(seed)
        self.fixed_per_batch = fixed_per_batch
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    def reseed(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = int(seed)
        self._generator, self._worker = None, None

    def rng(self, samples: list[Any]) -> torch.Generator:
        if self.fixed_per_batch:
            content = torch.cat([torch.as_tensor(s["input_ids"]).long() for s in samples]) if samples else torch.zeros(0)
            return torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(content.numpy().tobytes()))
        info = get_worker_info()
        worker = None if info is None else int(info.seed)
        if self._generator is None or worker != self._worker:
            seed = self.seed if worker is None else hash((self.seed, worker)) % (2**63)
            self._generator, self._worker = torch.Generator().manual_seed(seed), worker
        return self._generator


def _pad(rows: list[torch.Tensor], value: int, multiple: int = 1) -> torch.Tensor:
    length = max((len(r) for r in rows), default=1) or 1
    out = torch.full((len(rows), -(-length // multiple) * multiple), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _batch(
    inputs: list[torch.Tensor], labels: list[torch.Tensor], pad_id: int, skipped: list[str], multiple: int
) -> dict[str, Any]:
    ids = _pad(inputs, pad_id, multiple)
    mask = _pad([torch.ones_like(r) for r in inputs], 0, multiple)
    return {"input_ids": ids, "attention_mask": mask, "labels": _pad(labels, -100, multiple), "_skipped": skipped}


def full_stop_ids(tokenizer: Any) -> list[int]:
    """Ids of the (non-special) vocabulary entries whose text ends with ".", "!" or "?"."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids])
    return [i for i, t in zip(ids, texts) if t.rstrip().endswith(FULL_STOPS)]


# ---- BART: sentence permutation + text infilling ------------------------------------------------

def sentence_bounds(tokens: torch.Tensor, is_stop: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each sentence of ``tokens`` [n]: a sentence ends after a run of full stops."""
    n = len(tokens)
    stops = is_stop[tokens] if n else torch.zeros(0, dtype=torch.bool)
    ends = [i + 1 for i in range(n) if stops[i] and (i + 1 == n or not stops[i + 1])]
    if not ends or ends[-1] != n:
        ends.append(n)
    starts = [0, *ends[:-1]]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def permute_sentences(tokens: torch.Tensor, is_stop: torch.Tensor, ratio: float, rng: torch.Generator) -> torch.Tensor:
    """Shuffle ``ceil(ratio * sentences)`` of the sentences among their places (fairseq's rule)."""
    bounds = sentence_bounds(tokens, is_stop)
    count = len(bounds)
    chosen = torch.randperm(count, generator=rng)[: math.ceil(count * ratio)]
    order = torch.arange(count)
    order[chosen] = chosen[torch.randperm(len(chosen), generator=rng)]
    return torch.cat([tokens[bounds[i][0] : bounds[i][1]] for i in order.tolist()]) if count else tokens


def poisson_span_lengths(budget: int, lam: float, rng: torch.Generator) -> list[int]:
    """Span lengths ~ Poisson(lam) until they sum to ``budget``; the last one is trimmed to it.

    Zero-length spans (insertions) are kept. Returns [] for a zero budget.
    """
    lengths: list[int] = []
    total = 0
    while total < budget:
        draws = torch.poisson(torch.full((max(4, budget),), float(lam)), generator=rng).long().tolist()
        for length in draws:
            lengths.append(min(length, budget - total))
            total += lengths[-1]
            if total >= budget:
                break
    return lengths


def place_spans(n: int, lengths: list[int], rng: torch.Generator) -> list[int]:
    """Starts of spans of ``lengths`` in a sequence of n tokens, in order, with >= 1 kept token
    between two spans; the kept tokens are split among the gaps uniformly at random."""
    k = len(lengths)
    free = n - sum(lengths) - max(0, k - 1)  # kept tokens beyond the one each inner gap needs
    if free < 0:
        raise ValueError(f"{k} spans of {sum(lengths)} tokens do not fit apart in {n} tokens")
    # a uniform composition of `free` into k+1 gaps: k bars among free + k slots
    bars = torch.randperm(free + k, generator=rng)[:k].sort().values.tolist()
    gaps = [b - i for i, b in enumerate(bars)]  # kept tokens before each span, cumulative
    starts, used = [], 0
    for i, (gap, length) in enumerate(zip(gaps, lengths)):
        start = gap + used + i  # i: the mandatory token in each earlier inner gap
        starts.append(start)
        used += length
    return starts


class InfillingCollator:
    """BART noise: sentence permutation then text infilling (see the module docstring).

    samples: {"input_ids": LongTensor[n] raw ids, "doc_id": int} or Skipped ->
    {"input_ids", "attention_mask" [B, S], "labels" [B, T] (-100 padded), "_skipped"}.
    noise_density / mean_span_length: T5's keys, accepted and ignored (one flat noise node).
    """

    special_tokens_per_block = 2  # <s> ... </s>

    def __init__(
        self,
        tokenizer: Any,
        mask_ratio: float = 0.3,
        poisson_lambda: float = 3.0,
        permute_sentences: bool | float = True,
        random_ratio: float = 0.0,
        insert_ratio: float = 0.0,
        seed: int = 0,
        fixed_per_batch: bool = False,
        pad_to_multiple_of: int | None = None,
        noise_density: float | None = None,
        mean_span_length: float | None = None,
    ) -> None:
        del noise_density, mean_span_length  # span corruption's settings
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"noise.mask_ratio={mask_ratio} must be in [0, 1)")
        if poisson_lambda <= 0:
            raise ValueError(f"noise.poisson_lambda={poisson_lambda} must be > 0")
        if tokenizer.mask_token_id is None or tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("infilling needs a tokenizer with <s>, </s> and <mask> (BART's)")
        self.tokenizer = tokenizer
        self.mask_ratio = float(mask_ratio)
        self.poisson_lambda = float(poisson_lambda)
        self.permute_ratio = float(permute_sentences)
        self.random_ratio = float(random_ratio)
        self.insert_ratio = float(insert_ratio)
        self.mask_id, self.bos_id, self.eos_id = tokenizer.mask_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.is_stop = torch.zeros(len(tokenizer), dtype=torch.bool)
        self.is_stop[full_stop_ids(tokenizer)] = True
        special = set(tokenizer.all_special_ids)
        self.ordinary_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
        self.seeded = _Seeded(seed, fixed_per_batch)
        self.multiple = max(1, int(pad_to_multiple_of or 1))

    def reseed(self, seed: int | None = None) -> None:
        self.seeded.reseed(seed)

    def _mask_or_random(self, count: int, rng: torch.Generator) -> torch.Tensor:
        tokens = torch.full((count,), self.mask_id, dtype=torch.long)
        swap = torch.rand(count, generator=rng) < self.random_ratio
        picks = torch.randint(len(self.ordinary_ids), (int(swap.sum()),), generator=rng)
        tokens[swap] = self.ordinary_ids[picks]
        return tokens

    def infill(self, tokens: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """tokens [n] -> noised [n'] (each Poisson span -> one mask token)."""
        n = len(tokens)
        lengths = poisson_span_lengths(round(n * self.mask_ratio), self.poisson_lambda, rng)
        while lengths and sum(lengths) + len(lengths) - 1 > n:  # too many spans to keep apart: merge two
            lengths[-2] += lengths.pop()
        starts = place_spans(n, lengths, rng)
        fills = self._mask_or_random(len(lengths), rng)
        pieces, cursor = [], 0
        for start, length, fill in zip(starts, lengths, fills):
            pieces += [tokens[cursor:start], fill[None]]
            cursor = start + length
        pieces.append(tokens[cursor:])
        return torch.cat(pieces)

    def insert(self, tokens: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Insert ceil(insert_ratio * n) mask (or random) tokens at random places (fairseq's insertion noise)."""
        count = math.ceil(len(tokens) * self.insert_ratio)
        if count == 0:
            return tokens
        total = len(tokens) + count
        where = torch.zeros(total, dtype=torch.bool)
        where[torch.randperm(total, generator=rng)[:count]] = True
        out = torch.empty(total, dtype=torch.long)
        out[where] = self._mask_or_random(count, rng)
        out[~where] = tokens
        return out

    def noise(self, tokens: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw block [n] -> (input ``<s> noised </s>``, labels ``<s> block </s>``)."""
        tokens = tokens.long()
        source = permute_sentences(tokens, self.is_stop, self.permute_ratio, rng) if self.permute_ratio > 0 else tokens
        if self.mask_ratio > 0:
            source = self.infill(source, rng)
        if self.insert_ratio > 0:
            source = self.insert(source, rng)
        bos, eos = torch.tensor([self.bos_id]), torch.tensor([self.eos_id])
        return torch.cat([bos, source, eos]), torch.cat([bos, tokens, eos])

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        rng = self.seeded.rng(kept)
        pairs = [self.noise(torch.as_tensor(s["input_ids"]), rng) for s in kept]
        return _batch([p[0] for p in pairs], [p[1] for p in pairs], self.pad_id, skipped, self.multiple)


# ---- T5: span corruption -------------------------------------------------------------------------

def _random_segmentation(num_items: int, num_segments: int, rng: torch.Generator) -> torch.Tensor:
    """Lengths [num_segments] of a random partition of num_items items into non-empty segments (T5)."""
    first_in_segment = (torch.arange(num_items - 1) < num_segments - 1).long()
    first_in_segment = torch.cat([torch.zeros(1, dtype=torch.long), first_in_segment[torch.randperm(num_items - 1, generator=rng)]])
    segment_id = torch.cumsum(first_in_segment, 0)
    return torch.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(
    length: int, noise_density: float, rng: torch.Generator, mean_noise_span_length: float = 3.0
) -> torch.Tensor:
    """T5's ``random_spans_noise_mask`` (random_roll=False): a bool mask [length], True = noise.

    Non-noise first, noise last; round() halves to even, as tf.round.
    """
    if noise_density == 0.0:
        return torch.zeros(length, dtype=torch.bool)
    orig_length = length
    length = max(length, 2)  # avoid degeneracy
    num_noise_tokens = min(max(round(length * noise_density), 1), length - 1)
    num_noise_spans = max(round(num_noise_tokens / mean_noise_span_length), 1)
    num_nonnoise_tokens = length - num_noise_tokens
    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, rng)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, rng)
    interleaved = torch.stack([nonnoise_span_lengths, noise_span_lengths], dim=1).reshape(-1)
    span_starts = torch.cumsum(interleaved, 0)[:-1]
    span_start_indicator = torch.zeros(length, dtype=torch.long).index_add_(0, span_starts, torch.ones_like(span_starts))
    span_num = torch.cumsum(span_start_indicator, 0)
    return (span_num % 2 == 1)[:orig_length]


def noise_span_to_unique_sentinel(tokens: torch.Tensor, noise_mask: torch.Tensor, sentinels: torch.Tensor) -> torch.Tensor:
    """T5: each run of noise tokens -> one sentinel (k-th run -> sentinels[k]); the rest kept."""
    prev_is_noise = torch.cat([torch.zeros(1, dtype=torch.bool), noise_mask[:-1]])
    first_noise = noise_mask & ~prev_is_noise
    subsequent_noise = noise_mask & prev_is_noise
    run = torch.cumsum(first_noise.long(), 0) - 1
    out = torch.where(first_noise, sentinels[run.clamp(min=0)], tokens)
    return out[~subsequent_noise]


class SpanCorruptionCollator:
    """T5 noise: random spans -> sentinels (see the module docstring).

    samples: {"input_ids": LongTensor[n] raw ids, "doc_id": int} or Skipped ->
    {"input_ids", "attention_mask" [B, S], "labels" [B, T] (-100 padded), "_skipped"}.
    mask_ratio / poisson_lambda / permute_sentences / random_ratio / insert_ratio: BART's keys,
    accepted and ignored (one flat noise node).
    """

    special_tokens_per_block = 1  # </s>

    def __init__(
        self,
        tokenizer: Any,
        noise_density: float = 0.15,
        mean_span_length: float = 3.0,
        seed: int = 0,
        fixed_per_batch: bool = False,
        pad_to_multiple_of: int | None = None,
        mask_ratio: float | None = None,
        poisson_lambda: float | None = None,
        permute_sentences: bool | float | None = None,
        random_ratio: float | None = None,
        insert_ratio: float | None = None,
    ) -> None:
        del mask_ratio, poisson_lambda, permute_sentences, random_ratio, insert_ratio  # infilling's settings
        if not 0.0 <= noise_density < 1.0:
            raise ValueError(f"noise.noise_density={noise_density} must be in [0, 1)")
        if mean_span_length < 1:
            raise ValueError(f"noise.mean_span_length={mean_span_length} must be >= 1")
        names = [f"<extra_id_{k}>" for k in range(1000)]
        vocab = tokenizer.get_vocab()
        ids = [vocab[t] for t in names if t in vocab]
        if not ids or tokenizer.eos_token_id is None:
            raise ValueError("span corruption needs a tokenizer with </s> and sentinels <extra_id_0>, <extra_id_1>, ... (T5's)")
        self.tokenizer = tokenizer
        self.noise_density = float(noise_density)
        self.mean_span_length = float(mean_span_length)
        self.sentinels = torch.tensor(ids)
        self.eos_id, self.pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.seeded = _Seeded(seed, fixed_per_batch)
        self.multiple = max(1, int(pad_to_multiple_of or 1))

    def reseed(self, seed: int | None = None) -> None:
        self.seeded.reseed(seed)

    def corrupt(self, tokens: torch.Tensor, noise_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) for raw tokens [n] and a noise mask [n], both ending with ``</s>``."""
        spans = int((noise_mask & ~torch.cat([torch.zeros(1, dtype=torch.bool), noise_mask[:-1]])).sum())
        runs = int((~noise_mask & torch.cat([torch.ones(1, dtype=torch.bool), noise_mask[:-1]])).sum())
        if max(spans, runs) > len(self.sentinels):
            raise ValueError(f"{max(spans, runs)} noise spans but the tokenizer has {len(self.sentinels)} sentinels: "
                             "shorten data.block_size or raise noise.mean_span_length")
        eos = torch.tensor([self.eos_id])
        inputs = noise_span_to_unique_sentinel(tokens, noise_mask, self.sentinels)
        targets = noise_span_to_unique_sentinel(tokens, ~noise_mask, self.sentinels)
        return torch.cat([inputs, eos]), torch.cat([targets, eos])

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        rng = self.seeded.rng(kept)
        pairs = []
        for s in kept:
            tokens = torch.as_tensor(s["input_ids"]).long()
            mask = random_spans_noise_mask(len(tokens), self.noise_density, rng, self.mean_span_length)
            pairs.append(self.corrupt(tokens, mask))
        return _batch([p[0] for p in pairs], [p[1] for p in pairs], self.pad_id, skipped, self.multiple)
