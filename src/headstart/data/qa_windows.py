"""Extractive QA features: (question, context) -> one or more overlapping token windows.

A context longer than ``max_length`` is cut into windows that overlap by ``doc_stride``
tokens, so an answer near a window edge is whole in at least one of them. Each window
(feature) carries:

* ``start_positions`` / ``end_positions``: token indices of the answer inside the window,
  or the [CLS] index when the answer is not (wholly) inside it (and for unanswerable questions);
* ``example_id`` and ``window_index`` (its rank among its example's windows): the key that
  groups windows for post-processing and de-duplicates them in the metric;
* ``offset_mapping``: per token (char_start, char_end) in the context, None for question and
  special tokens, so post-processing can only pick spans inside the context;
* ``cls_index``: where the "no answer" score is read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any


def _answer_positions(
    offsets: Sequence[tuple[int, int]],
    sequence_ids: Sequence[int | None],
    context_id: int,
    start_char: int,
    end_char: int,
    cls_index: int,
) -> tuple[int, int]:
    """Token span [start, end] (inclusive) of chars [start_char, end_char) in this window, or (cls, cls)."""
    context_tokens = [i for i, s in enumerate(sequence_ids) if s == context_id]
    first, last = context_tokens[0], context_tokens[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _cls_index(input_ids: Sequence[int], tokenizer: Any) -> int:
    for token_id in (tokenizer.cls_token_id, tokenizer.bos_token_id):
        if token_id is not None and token_id in input_ids:
            return list(input_ids).index(token_id)
    return 0


def prepare_qa_features(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    example_ids: Sequence[Hashable],
    answers: Sequence[Mapping[str, Sequence[Any]]] | None = None,
    max_length: int = 384,
    doc_stride: int = 128,
    pad_to_max_length: bool = False,
) -> dict[str, list]:
    """Tokenize a batch of QA examples into windows (a ``datasets.map(batched=True)`` function).

    answers: per example SQuAD-style ``{"text": [...], "answer_start": [...]}`` (empty lists for
    no answer); the first answer is the training target. None at prediction time.
    doc_stride: number of tokens shared by consecutive windows (the tokenizer's ``stride``).
    Returns lists of length F (number of windows): input_ids, attention_mask, (token_type_ids),
    offset_mapping, example_id, window_index, cls_index, and with answers start/end_positions.
    """
    # The question goes on the side that is never truncated; left-padding tokenizers put it second.
    question_first = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]  # leading spaces waste window room and shift offsets
    first, second = (questions, contexts) if question_first else (contexts, questions)
    encoding = tokenizer(
        list(first),
        list(second),
        truncation="only_second" if question_first else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )
    sample_map = encoding.pop("overflow_to_sample_mapping")
    offset_maps = encoding.pop("offset_mapping")
    context_id = 1 if question_first else 0
    out: dict[str, list] = {key: list(value) for key, value in encoding.items()}
    for key in ("offset_mapping", "example_id", "window_index", "cls_index"):
        out[key] = []
    if answers is not None:
        out["start_positions"], out["end_positions"] = [], []
    windows_seen: dict[int, int] = {}
    for i, offsets in enumerate(offset_maps):
        sample = sample_map[i]
        sequence_ids = encoding.sequence_ids(i)
        cls_index = _cls_index(encoding["input_ids"][i], tokenizer)
        out["example_id"].append(example_ids[sample])
        out["window_index"].append(windows_seen.get(sample, 0))
        windows_seen[sample] = windows_seen.get(sample, 0) + 1
        out["cls_index"].append(cls_index)
        out["offset_mapping"].append(
            [tuple(o) if s == context_id else None for o, s in zip(offsets, sequence_ids)]
        )
        if answers is None:
            continue
        answer = answers[sample]
        if len(answer["answer_start"]) == 0:
            start, end = cls_index, cls_index
        else:
            start_char = int(answer["answer_start"][0])
            end_char = start_char + len(answer["text"][0])
            start, end = _answer_positions(offsets, sequence_ids, context_id, start_char, end_char, cls_index)
        out["start_positions"].append(start)
        out["end_positions"].append(end)
    return out
