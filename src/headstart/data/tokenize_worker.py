"""The tokenizing side of :mod:`headstart.data.token_shards`, light enough for worker processes.

A worker gets the tokenizer once (the ``tokenizers`` JSON of a fast tokenizer, or the pickled
tokenizer otherwise) and then turns chunks of texts into one flat id array plus per-text
lengths, which pickle back to the writer cheaply. Only numpy and ``tokenizers`` are imported
here (not torch), so starting a worker costs little.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

_TOKENIZER: Any = None


def tokenizer_payload(tokenizer: Any) -> tuple[str, Any]:
    """What a worker needs to rebuild ``tokenizer``: ("json", backend JSON) for a fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return "json", backend.to_str()
    return "pickle", pickle.dumps(tokenizer)


def init_worker(payload: tuple[str, Any]) -> None:
    """Process initializer: build the tokenizer once per worker."""
    global _TOKENIZER
    kind, data = payload
    if kind == "json":
        from tokenizers import Tokenizer

        _TOKENIZER = ("json", Tokenizer.from_str(data))
    else:
        _TOKENIZER = ("pickle", pickle.loads(data))


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (ids: int64 [sum of lengths], lengths: int64 [len(texts)]), no special tokens."""
    kind, tok = _TOKENIZER
    if kind == "json":
        ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)] if texts else []
    else:
        ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths
