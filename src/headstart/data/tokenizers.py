"""The tokenizer hand-off between a text model and its data, one way for every text datamodule.

A backbone's ``data_spec()`` carries ``tokenizer`` (its own, or None for a random-init preset)
and ``tokenizer_training``, the one schema for a preset's tokenizer::

    tokenizer_training: {kind: wordpiece | bytelevel_bpe | unigram, family: bert | gpt2 | bart | t5,
                         vocab_size: int, extra_ids: int (t5 sentinels, optional)}

(``kind`` follows from ``family`` when left out). :func:`take_or_train` returns the model's
tokenizer, or trains one on the datamodule's training text and returns it as the answer the
builder hands back to the model (``backbone.attach(tokenizer=...)``), optionally cached on disk
so a later run gets the very same vocabulary (training in ``tokenizers`` is not deterministic).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from headstart.data.errors import DataError
from headstart.data.masking import special_ids
from headstart.data.tokenizer_training import FAMILY_KIND, train_tokenizer


def training_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec["tokenizer_training"]`` completed: a family's kind, bert/2000 when nothing is said."""
    settings = dict(spec.get("tokenizer_training") or {})
    family = settings.setdefault("family", "bert")
    if family not in FAMILY_KIND:
        raise DataError(f"tokenizer_training.family={family} is not one of {', '.join(FAMILY_KIND)}")
    settings.setdefault("kind", FAMILY_KIND[family])
    settings["vocab_size"] = int(settings.get("vocab_size", 2000))
    return settings


def take_or_train(
    spec: dict[str, Any],
    texts: Callable[[], Iterable[str]],
    max_length: int,
    cache_dir: Path | None = None,
    cache_key: Callable[[dict[str, Any]], str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(tokenizer, answer to the model): the model's own tokenizer and {}, or one trained on
    ``texts()`` for a preset and ``{"tokenizer": it}``.

    max_length: the trained tokenizer's ``model_max_length``. cache_dir / cache_key: keep the
    trained tokenizer in ``cache_dir/tokenizer-<cache_key(settings)>`` and reuse it when there.
    """
    if spec.get("tokenizer") is not None:
        return spec["tokenizer"], {}
    from transformers import PreTrainedTokenizerFast

    settings = training_settings(spec)
    directory = cache_dir / f"tokenizer-{cache_key(settings)}" if cache_dir is not None and cache_key else None
    if directory is not None and (directory / "tokenizer.json").is_file():
        rank_zero_info(f"data: reusing cached tokenizer {directory}")
        cached = PreTrainedTokenizerFast.from_pretrained(str(directory))
        return cached, {"tokenizer": cached}
    tokenizer = train_tokenizer(texts(), model_max_length=int(max_length), **settings)
    if len(tokenizer) <= len(special_ids(tokenizer)):
        raise DataError("no training text to train a tokenizer on")
    if directory is not None:
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        tokenizer.save_pretrained(str(tmp))
        try:
            tmp.rename(directory)
        except OSError:  # another process cached one first: use that one
            shutil.rmtree(tmp, ignore_errors=True)
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    return tokenizer, {"tokenizer": tokenizer}
