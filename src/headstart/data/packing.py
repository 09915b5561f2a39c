"""Packing tokenized documents into fixed-size blocks (causal LM) and seq2seq label helpers.

Packing: documents are concatenated with an EOS after each one and the stream is cut every
``block_size`` tokens, so no position is padding. ``labels`` equal ``input_ids``; the one-token
shift happens in the loss (``headstart.losses.lm.shift_labels_left``), as in transformers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import torch

Remainder = Literal["drop", "keep", "pad"]


def iter_blocks(
    documents: Iterable[Sequence[int]],
    block_size: int,
    eos_id: int | None,
    remainder: Remainder = "drop",
    pad_id: int = 0,
) -> Iterator[list[int]]:
    """Stream ``block_size``-token blocks from tokenized documents (lazily; any corpus size).

    Each document is followed by ``eos_id`` (None: documents already end with one). The last
    partial block is dropped (``drop``), yielded shorter (``keep``) or right-padded with
    ``pad_id`` (``pad``; mask it with ``labels_from_block``).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    buffer: list[int] = []
    for doc in documents:
        buffer.extend(doc)
        if eos_id is not None:
            buffer.append(eos_id)
        full = len(buffer) // block_size * block_size
        for start in range(0, full, block_size):
            yield buffer[start : start + block_size]
        buffer = buffer[full:]
    if buffer and remainder == "keep":
        yield buffer
    elif buffer and remainder == "pad":
        yield buffer + [pad_id] * (block_size - len(buffer))


def pack_documents(
    documents: Iterable[Sequence[int]],
    block_size: int,
    eos_id: int | None,
    remainder: Remainder = "drop",
    pad_id: int = 0,
) -> dict[str, list[list[int]]]:
    """Packed blocks as columns {"input_ids", "labels", "attention_mask"} (``datasets.map``-ready).

    Padding added by ``remainder="pad"`` has attention 0 and label -100; everything else is real.
    A batched ``datasets.Dataset.map`` call packs within each map batch, like transformers'
    run_clm ``group_texts``.
    """
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
    kept = "drop" if remainder == "drop" else "keep"
    for block in iter_blocks(documents, block_size, eos_id, kept):
        padding = block_size - len(block) if remainder == "pad" else 0
        out["input_ids"].append(block + [pad_id] * padding)
        out["labels"].append(block + [-100] * padding)
        out["attention_mask"].append([1] * len(block) + [0] * padding)
    return out


def shift_tokens_right(labels: torch.Tensor, pad_id: int, decoder_start_id: int) -> torch.Tensor:
    """Decoder inputs from decoder labels, as transformers' BART ``shift_tokens_right`` / T5 ``_shift_right``.

    labels: [B, T] (may hold -100) -> [B, T]: ``decoder_start_id`` then labels[:, :-1], -100 -> pad_id.
    BART: pad 1, start 2 (``</s>``); T5: pad 0, start 0.
    """
    shifted = labels.new_empty(labels.shape)
    shifted[..., 1:] = labels[..., :-1]
    shifted[..., 0] = decoder_start_id
    return shifted.masked_fill_(shifted == -100, pad_id)


def labels_from_padded(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Decoder labels from right-padded target ids [B, T]: pad positions -> -100 (ignored by the loss).

    Only for tokenizers whose pad id differs from every real token (GPT-2 with pad = EOS would lose
    its EOS targets; use the attention mask there instead).
    """
    return ids.masked_fill(ids == pad_id, -100)
