"""BERT's masked-LM corruption (and NSP inputs) as a collator over raw token blocks.

:func:`mask_tokens` is the pure form: each non-special token is selected with probability
``probability`` (15%); a selected token becomes [MASK] with probability ``mask_fraction`` (80%),
a random non-special token with ``random_fraction`` (10%), and stays itself otherwise (10%).
``labels`` hold the original id at selected positions and -100 elsewhere. Selection is a
Bernoulli draw per token (as transformers' ``DataCollatorForLanguageModeling``), or, for
whole-word masking, per word: every piece of a word shares its first piece's draw, so words
are masked whole; the 80/10/10 choice stays per token (as BERT's and transformers' whole-word
masking). Word pieces are found from the vocabulary: ``##`` continues a word (WordPiece); for
byte-level BPE / SentencePiece a piece not starting with ``Ġ`` / ``▁`` continues one.

:class:`MLMCollator` adds the special tokens ([CLS] A [SEP], or [CLS] A [SEP] B [SEP] for NSP),
``token_type_ids``, ``attention_mask`` and padding, then masks. Its generator is seeded from
``seed`` and the dataloader worker id, so a run's masks are reproducible; with
``fixed_per_batch`` (evaluation) each batch's masks depend only on its content, so validation
scores the same positions every epoch.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch.utils.data import get_worker_info

from headstart.data.errors import split_skipped


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_token_id: int,
    random_ids: torch.Tensor,
    probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    continuation: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``input_ids`` [B, L] for MLM; returns (corrupted ids [B, L], labels [B, L]).

    special: bool [B, L], True where a token may never be selected (specials, padding).
    random_ids: [V'] ids a random replacement is drawn from (the non-special vocabulary).
    continuation: bool [B, L] or None; True where a token continues the previous one's word
    (whole-word masking). generator: source of randomness (None: torch's global one).
    """
    if mask_fraction + random_fraction > 1:
        raise ValueError(f"mask_fraction + random_fraction = {mask_fraction + random_fraction} > 1")
    draw = torch.rand(input_ids.shape, generator=generator)
    if continuation is not None:
        # each token takes the draw of the first piece of its word; a special token, and the token
        # after one (a block may begin inside a word), start a word
        after_special = torch.cat([torch.ones_like(special[:, :1]), special[:, :-1]], dim=1)
        starts = ~continuation | special | after_special
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        first = torch.cummax(torch.where(starts, positions, torch.zeros_like(positions)), dim=1).values
        draw = draw.gather(1, first)
    selected = (draw < probability) & ~special
    labels = input_ids.masked_fill(~selected, -100)
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (action < mask_fraction)
    to_random = selected & (action >= mask_fraction) & (action < mask_fraction + random_fraction)
    random_tokens = random_ids[torch.randint(len(random_ids), input_ids.shape, generator=generator)]
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    corrupted = torch.where(to_random, random_tokens, corrupted)
    return corrupted, labels


def continuation_table(tokenizer: Any) -> torch.Tensor:
    """bool [len(tokenizer)]: True for ids whose piece continues the previous piece's word."""
    vocab = tokenizer.get_vocab()
    table = torch.zeros(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
    tokens = list(vocab)
    if any(t.startswith("##") for t in tokens):  # WordPiece
        cont = [t.startswith("##") for t in tokens]
    else:
        marker = "Ġ" if sum(t.startswith("Ġ") for t in tokens) >= sum(t.startswith("▁") for t in tokens) else "▁"
        cont = [not t.startswith(marker) for t in tokens]
    for token, flag in zip(tokens, cont):
        table[vocab[token]] = flag
    table[list(special_ids(tokenizer))] = False
    return table


def special_ids(tokenizer: Any) -> set[int]:
    """Every special token id (pad, cls, sep, mask, unk, sentinels, other added specials)."""
    ids = set(int(i) for i in tokenizer.all_special_ids)
    for index, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            ids.add(int(index))
    return ids


class MLMCollator:
    """Raw blocks -> an MLM batch (see module docstring).

    Samples: ``{"input_ids": LongTensor[n] (raw ids), "doc_id"}``, or for NSP also
    ``"pair_ids"`` (segment B) and ``"is_next"`` (1: B follows A in its document); Skipped
    markers are reported in ``batch["_skipped"]``.

    Batch: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels`` [B, L] (labels: the
    original id at selected positions, -100 elsewhere); with NSP ``next_sentence_label`` [B] in
    transformers' convention (0: B is the continuation, 1: B is random);
    ``num_tokens`` / ``num_padded`` (ints) for the padding fraction.
    """

    def __init__(
        self,
        tokenizer: Any,
        probability: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        whole_word: bool = False,
        nsp: bool = False,
        pad_to_multiple_of: int = 1,
        seed: int = 0,
        fixed_per_batch: bool = False,
    ) -> None:
        self.cls_id = _first_id(tokenizer, "cls_token_id", "bos_token_id")
        self.sep_id = _first_id(tokenizer, "sep_token_id", "eos_token_id")
        self.mask_id = tokenizer.mask_token_id
        if self.cls_id is None or self.sep_id is None or self.mask_id is None:
            raise ValueError(f"masked LM needs a tokenizer with [CLS], [SEP] and [MASK] tokens; {type(tokenizer).__name__} lacks one")
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.probability, self.mask_fraction, self.random_fraction = probability, mask_fraction, random_fraction
        self.whole_word, self.nsp, self.multiple = whole_word, nsp, max(1, int(pad_to_multiple_of or 1))
        self.seed, self.fixed_per_batch = seed, fixed_per_batch
        self.special_tokens_per_block = 3 if nsp else 2
        specials = special_ids(tokenizer) | {self.pad_id, self.cls_id, self.sep_id, self.mask_id}
        size = max(len(tokenizer), max(specials) + 1)
        self.is_special = torch.zeros(size, dtype=torch.bool)
        self.is_special[list(specials)] = True
        self.random_ids = torch.nonzero(~self.is_special[: len(tokenizer)]).flatten()
        self.continuation = continuation_table(tokenizer) if whole_word else None
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    def generator(self, batch_ids: torch.Tensor) -> torch.Generator:
        """This worker's generator (seeded from seed and worker id), or a per-batch one."""
        if self.fixed_per_batch:
            return torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(batch_ids.numpy().tobytes()))
        info = get_worker_info()
        worker = info.id if info is not None else -1
        if self._generator is None or worker != self._worker:
            self._generator = torch.Generator().manual_seed(self.seed * 1009 + worker + 1)
            self._worker = worker
        return self._generator

    def assemble(self, kept: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """[CLS] A [SEP] (B [SEP]) per sample, right-padded: input_ids, token_type_ids, attention_mask."""
        rows, types = [], []
        for s in kept:
            a = s["input_ids"].tolist()
            ids, tt = [self.cls_id, *a, self.sep_id], [0] * (len(a) + 2)
            if self.nsp:
                b = s["pair_ids"].tolist()
                ids, tt = ids + [*b, self.sep_id], tt + [1] * (len(b) + 1)
            rows.append(ids)
            types.append(tt)
        width = -(-max(len(r) for r in rows) // self.multiple) * self.multiple
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, tt) in enumerate(zip(rows, types)):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            token_type_ids[i, : len(tt)] = torch.tensor(tt)
            attention_mask[i, : len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        kept, skipped = split_skipped(samples)
        if not kept:
            empty = torch.zeros(0, 1, dtype=torch.long)
            batch = {k: empty for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
            if self.nsp:
                batch["next_sentence_label"] = torch.zeros(0, dtype=torch.long)
            return {**batch, "num_tokens": 0, "num_padded": 0, "_skipped": skipped}
        batch = self.assemble(kept)
        ids = batch["input_ids"]
        special = self.is_special[ids] | (batch["attention_mask"] == 0)
        continuation = self.continuation[ids] if self.continuation is not None else None
        batch["input_ids"], batch["labels"] = mask_tokens(
            ids, special, self.mask_id, self.random_ids, self.probability, self.mask_fraction,
            self.random_fraction, continuation, self.generator(ids),
        )
        if self.nsp:
            batch["next_sentence_label"] = torch.tensor([1 - int(s["is_next"]) for s in kept], dtype=torch.long)
        real = int(batch["attention_mask"].sum())
        return {**batch, "num_tokens": real, "num_padded": ids.numel() - real, "_skipped": skipped}


def _first_id(tokenizer: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None
