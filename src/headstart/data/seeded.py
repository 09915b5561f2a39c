"""Per-example random streams, so a resumed run draws the same augmentations as an uninterrupted one.

A loader worker seeds its RNGs once, when it starts, from the loader's base seed; after a
resume the worker starts afresh in the middle of an epoch, so its random crops and flips would
differ from the uninterrupted run's from the first batch on (and with ``num_workers=0`` the
augmentations would draw from the same global stream as dropout). Here every training example
draws from generators seeded by ``(seed, epoch, index)`` alone: the same whatever the worker
count, the worker, or where in the epoch the run was resumed.

Wiring (``DataModule._loader``): the batch sampler's lists of indices become lists of
``(epoch, index)`` keys (:class:`EpochKeyedBatches`), and :class:`SeededSamples` seeds
Python's, NumPy's and torch's CPU generators from the key around ``dataset[index]``, putting
the caller's states back afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

Key = tuple[int, int]  # (epoch, dataset index)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for example ``index`` in epoch ``epoch`` (well mixed, non-negative)."""
    words = np.random.SeedSequence([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, epoch, index]).generate_state(2)
    return int(words[0]) << 31 ^ int(words[1])


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` keys, each example drawn under its own seed.

    Global RNG states are restored after each example, so loading in the main process
    (``num_workers=0``) leaves the stream that dropout and masking draw from untouched.
    Only torch's CPU generator is reseeded (``torch.manual_seed`` would reseed CUDA's too).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> Any:
        epoch, index = key
        seed = sample_seed(self.seed, epoch, index)
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(seed)
            np.random.seed(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class EpochKeyedBatches(Sampler[list[Key]]):
    """Batches of ``(epoch, index)`` keys from a batch sampler of indices.

    Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` at each epoch start (and with the
    restored epoch on resume); it is passed on to the wrapped sampler, whose order must be a
    function of its seed and epoch so that torchdata can fast-forward it to the resume point.
    """

    def __init__(self, batches: Sampler[list[int]]) -> None:
        self.batches = batches
        self.epoch = 0

    @property
    def sampler(self) -> EpochKeyedBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        inner = getattr(self.batches, "set_epoch", None) or getattr(getattr(self.batches, "sampler", None), "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[Key]]:
        epoch = self.epoch
        for batch in self.batches:
            yield [(epoch, int(i)) for i in batch]
