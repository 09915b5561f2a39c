"""What the three encoder text datamodules share (classification, NER, extractive QA).

* the tokenizer: the model's own (``spec["tokenizer"]``), or, for a random-init preset, one
  trained on the fly on the training text and handed back from ``configure`` so the model is
  sized to it (``backbone.attach(tokenizer=...)``);
* pre-tokenized features held in memory (:class:`FeatureDataset`), with their lengths for the
  length-grouped batch sampler (on by default in training, DDP-aware);
* dynamic padding (:func:`pad_features`), to a multiple of 8 under mixed precision, with the
  real / padded token counts carried in the batch so the task can log the padding fraction;
* turning bad records into a DataError naming ``file:line`` or a counted skip (the split files
  and the held-out validation come from :mod:`headstart.data.splits`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from headstart.data.base import DataModule
from headstart.data.errors import OnError, Skipped, load_example, split_skipped
from headstart.data.samplers import LengthGroupedBatchSampler
from headstart.data.tokenizers import take_or_train

Item = dict[str, Any] | Skipped
# Keys padded as token sequences (value: the pad id; None: the tokenizer's pad id).
SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "labels": -100}


class FeatureDataset(Dataset):
    """Tokenized features (dicts) or Skipped markers; ``lengths`` feed the length-grouped sampler."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = list(items)
        self.lengths = [0 if isinstance(it, Skipped) else len(it["input_ids"]) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]


def parse_all(
    records: Iterable[tuple[str, Any]], parse: Callable[[str, Any], dict[str, Any]], on_error: OnError
) -> list[tuple[str, Item]]:
    """Apply ``parse(where, record)`` to each record; failures raise naming ``where`` or become Skipped."""
    out = []
    for where, record in records:
        if isinstance(record, Skipped):
            out.append((where, record))
        else:
            out.append((where, load_example(lambda: parse(where, record), where, on_error)))
    return out


def pad_features(samples: list[Item], pad_id: int, multiple: int = 1) -> dict[str, Any]:
    """Dynamic padding of a list of features to the batch's longest (rounded up to ``multiple``).

    Token keys (SEQUENCE_KEYS) become [B, L] long tensors; a scalar ``labels`` becomes [B], a
    fixed-size list of floats [B, K]; every other key stays a list. ``num_tokens`` / ``num_padded``
    (ints) count real and padding positions; skipped examples are listed in ``_skipped``.
    """
    kept, skipped = split_skipped(samples)
    if not kept:
        return {"input_ids": torch.zeros(0, 1, dtype=torch.long), "num_tokens": 0, "num_padded": 0, "_skipped": skipped}
    longest = max(len(s["input_ids"]) for s in kept)
    width = -(-longest // multiple) * multiple
    batch: dict[str, Any] = {}
    for key in kept[0]:
        values = [s[key] for s in kept]
        if key in SEQUENCE_KEYS and isinstance(values[0], (list, tuple)) and (key != "labels" or "word_ids" in kept[0]):
            fill = pad_id if SEQUENCE_KEYS[key] is None else SEQUENCE_KEYS[key]
            batch[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values], dtype=torch.long)
        elif key == "labels":
            dtype = torch.float if isinstance(values[0], (list, tuple)) else torch.long
            batch[key] = torch.tensor(values, dtype=dtype)
        elif key in ("start_positions", "end_positions", "cls_index", "window_index", "index"):
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:
            batch[key] = values
    real = sum(len(s["input_ids"]) for s in kept)
    batch["num_tokens"], batch["num_padded"] = real, len(kept) * width - real
    batch["_skipped"] = skipped
    return batch


class EncoderTextDataModule(DataModule):
    """Base of the encoder text datamodules: tokenizer hand-off, padding, length grouping.

    max_length: longest sequence in tokens (null: the model's limit, at most 512).
    group_by_length: length-grouped batches in training (eval keeps dataset order).
    bucket_size_multiplier: mega-bucket size of the length grouping, in batches.
    pad_to_multiple_of: null: 8 under 16-bit mixed precision (tensor cores), else 1.
    Subclasses implement ``training_texts()`` (for a preset's tokenizer) and ``setup``.
    """

    def __init__(
        self,
        max_length: int | None = None,
        group_by_length: bool = True,
        bucket_size_multiplier: int = 50,
        pad_to_multiple_of: int | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        self.max_length_cfg = max_length
        self.group_by_length = group_by_length
        self.bucket_size_multiplier = bucket_size_multiplier
        self.pad_to_multiple_of = pad_to_multiple_of
        self.tokenizer: Any = None
        self.collate = self._collate

    def training_texts(self) -> list[str]:
        raise NotImplementedError

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Take the model's tokenizer, or train one on the training text and hand it back."""
        self.spec = dict(spec)
        self.tokenizer, answer = take_or_train(spec, self.training_texts, self.max_length)
        return answer

    @property
    def max_length(self) -> int:
        limits = [n for n in (self.max_length_cfg, self.spec.get("max_length"), 512) if n]
        return int(min(limits))

    def _multiple(self) -> int:
        if self.pad_to_multiple_of is not None:
            return int(self.pad_to_multiple_of)
        precision = str(getattr(self.trainer, "precision", "32")) if self.trainer is not None else "32"
        return 8 if "16" in precision else 1

    def _collate(self, samples: list[Item]) -> dict[str, Any]:
        return pad_features(samples, self.tokenizer.pad_token_id or 0, self._multiple())

    def batch_sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        if not (train and self.group_by_length and isinstance(dataset, FeatureDataset)):
            return None
        world, rank = self.world
        return LengthGroupedBatchSampler(
            dataset.lengths, self.batch_size, shuffle=True, seed=self.seed, drop_last=self.drop_last,
            num_replicas=world, rank=rank, bucket_size_multiplier=self.bucket_size_multiplier,
        )
