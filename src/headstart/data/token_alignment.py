"""Word-level labels -> sub-word token labels, using a fast tokenizer's ``word_ids()``.

A word split into several sub-tokens is labelled on its first sub-token; the rest get
``ignore_index`` (-100) so the loss and the entity metric skip them. With
``label_all_tokens`` the continuation sub-tokens are labelled too, a B- tag becoming its I-
tag (as transformers' ``run_ner`` does), so an entity is not split into several. Special
tokens ([CLS], [SEP], padding) always get ``ignore_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100


def b_to_i_map(label_names: Sequence[str]) -> list[int]:
    """For each label id, the id a continuation sub-token gets: B-X -> I-X when I-X exists, else itself."""
    index = {name: i for i, name in enumerate(label_names)}
    mapping = []
    for i, name in enumerate(label_names):
        inside = "I-" + name[2:] if name.startswith("B-") else None
        mapping.append(index.get(inside, i) if inside else i)
    return mapping


def align_word_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    label_all_tokens: bool = False,
    continuation_map: Sequence[int] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> list[int]:
    """Labels for one tokenized sequence.

    word_ids: [L] word index of each token (None for special tokens), from ``encoding.word_ids(i)``.
    word_labels: [W] one label id per word.
    continuation_map: label id -> id for non-first sub-tokens (``b_to_i_map``); identity when None.
    Returns [L] label ids with ``ignore_index`` where no label applies.
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None:
            labels.append(ignore_index)
        elif word != previous:
            labels.append(word_labels[word])
        elif label_all_tokens:
            label = word_labels[word]
            # -100 words (e.g. unlabelled) stay -100 on every sub-token
            mapped = continuation_map[label] if continuation_map is not None and label >= 0 else label
            labels.append(mapped)
        else:
            labels.append(ignore_index)
        previous = word
    return labels


def tokenize_and_align_labels(
    tokenizer: Any,
    words: Sequence[Sequence[str]],
    word_labels: Sequence[Sequence[int]] | None,
    label_names: Sequence[str] | None = None,
    max_length: int | None = None,
    label_all_tokens: bool = False,
) -> dict[str, list]:
    """Tokenize pre-split sentences and align their labels (a ``datasets.map(batched=True)`` function).

    words: [N][W_i] words per sentence; word_labels: [N][W_i] label ids (None at prediction time).
    label_names: id -> tag name, needed only with ``label_all_tokens`` (for the B- -> I- map).
    Returns the tokenizer's fields (input_ids, attention_mask, ...) plus ``labels`` [N][L_i] and
    ``word_ids`` [N][L_i] (None for special tokens) to map predictions back to words.
    Words past ``max_length`` are truncated away.
    """
    encoding = tokenizer(
        [list(w) for w in words],
        is_split_into_words=True,
        truncation=max_length is not None,
        max_length=max_length,
    )
    continuation = b_to_i_map(label_names) if (label_all_tokens and label_names is not None) else None
    out = {key: list(value) for key, value in encoding.items()}
    out["word_ids"] = [encoding.word_ids(i) for i in range(len(words))]
    if word_labels is not None:
        out["labels"] = [
            align_word_labels(out["word_ids"][i], word_labels[i], label_all_tokens, continuation)
            for i in range(len(words))
        ]
    return out
