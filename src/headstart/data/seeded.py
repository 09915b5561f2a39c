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
from torch.utils.data import Dataset, Sampler, get_worker_info

Key = tuple[int, int]  # (epoch, dataset index)


_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of SplitMix64: a cheap, well-mixing 64-bit hash (a fraction of SeedSequence's cost)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for example ``index`` in epoch ``epoch`` of a run seeded ``seed``."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK) ^ epoch) ^ index) >> 1


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` keys, each example drawn under its own seed.

    Global RNG states are restored after each batch, so loading in the main process
    (``num_workers=0``) leaves the stream that dropout and masking draw from untouched.
    Only torch's CPU generator is reseeded (``torch.manual_seed`` would reseed CUDA's too).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[Key]) -> list[Any]:
        """A batch (the loader's fetcher calls this with the batch's keys): each example under its
        own seed; in the main process the caller's RNG states are saved and put back once per
        batch, not once per example (a NumPy state round trip alone costs about 1 ms)."""
        if get_worker_info() is not None:  # a worker's own global streams serve nothing else
            return [self._seeded(key) for key in keys]
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return [self._seeded(key) for key in keys]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

    def _seeded(self, key: Key) -> Any:
        epoch, index = key
        _seed_all(sample_seed(self.seed, epoch, index))
        return self.dataset[index]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)


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
        inner = getattr(self.batches, "set_epoch", None)
        if inner is None:  # a torch BatchSampler: the epoch goes to its sampler
            inner = getattr(getattr(self.batches, "sampler", None), "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[Key]]:
        epoch = self.epoch
        for batch in self.batches:
            yield [(epoch, int(i)) for i in batch]
