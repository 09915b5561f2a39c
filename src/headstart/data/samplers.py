"""Length-grouped batching: batches of similar length so dynamic padding pads little.

Shared by text and audio tasks. Each yielded batch is a list of dataset indices.

Training (``shuffle=True``): indices are shuffled, cut into mega-buckets of
``batch_size * bucket_size_multiplier``, sorted by length inside each bucket, cut into
batches, and the batches are shuffled again, so batches are homogeneous but their order
is random (the recipe of fairseq / transformers' ``LengthGroupedSampler``).

Evaluation (``shuffle=False``): the whole set is sorted by length (longest first, ties
by index), so batches come out *permuted* relative to the dataset. To give outputs back
in input order, carry each example's dataset index through the collator and scatter the
predictions with :func:`restore_input_order` (or ``argsort`` of the concatenated
indices). The order is deterministic, so every rank and every epoch sees the same one.

DDP: batches are dealt round-robin, so each rank gets a disjoint list with the same
number of batches (DDP needs equal step counts). With ``drop_last=False`` every index
still appears exactly once across ranks: when the batch count does not divide by the
number of ranks the largest batches are split in two (never repeated), and only a
dataset smaller than the number of ranks repeats examples. Build the loader with
``DataLoader(ds, batch_sampler=sampler)`` and ``Trainer(use_distributed_sampler=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose ``lengths`` are close; DDP-aware; exact ``len``.

    Args:
        lengths: length of each example (tokens, samples, frames: any monotone proxy).
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        shuffle: random buckets and batch order (train) or a fixed length-sorted order (eval).
        seed: base seed; epoch ``e`` uses ``seed + e`` so runs and resumes repeat exactly.
        drop_last: drop the incomplete batch and the batches that do not divide across ranks.
        num_replicas, rank: DDP world; default from ``torch.distributed`` when initialised.
        bucket_size_multiplier: mega-bucket size in batches (larger: less padding, less
            randomness).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        bucket_size_multiplier: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.bucket_size_multiplier = max(1, bucket_size_multiplier)
        self.epoch = 0
        # Stored under private names on purpose: Lightning rebuilds any batch sampler that has
        # both `batch_size` and `drop_last` attributes as `cls(sampler, batch_size=..., ...)`,
        # which would break this class (its first argument is `lengths`).
        self._batch_size = batch_size
        self._drop_last = drop_last

    @property
    def sampler(self) -> LengthGroupedBatchSampler:
        """Self: Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, not on the batch sampler."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of epoch ``epoch`` (no effect when ``shuffle=False``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches this rank yields per epoch (exact, computed without shuffling)."""
        n = len(self.lengths)
        full, rest = divmod(n, self._batch_size)
        if self._drop_last:
            return full // self.num_replicas
        return math.ceil((full + (rest > 0)) / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        yield from batches[self.rank :: self.num_replicas]

    def _all_batches(self) -> list[list[int]]:
        """Every batch of the epoch, for all ranks, before dealing them out."""
        n = len(self.lengths)
        if n == 0:
            return []
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self._bucketed_order(torch.randperm(n, generator=gen))
        else:
            gen = None
            order = _sort_by_length(torch.arange(n), self.lengths)
        batches = [chunk.tolist() for chunk in order.split(self._batch_size)]
        if self._drop_last and len(batches[-1]) < self._batch_size:
            batches.pop()
        if gen is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        if self._drop_last:
            return batches[: len(batches) // self.num_replicas * self.num_replicas]
        return _even_out(batches, self.num_replicas)

    def _bucketed_order(self, perm: torch.Tensor) -> torch.Tensor:
        """perm: [N] shuffled indices -> [N] indices sorted by length within each mega-bucket."""
        bucket = self._batch_size * self.bucket_size_multiplier
        return torch.cat([_sort_by_length(chunk, self.lengths) for chunk in perm.split(bucket)])


def _sort_by_length(indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """indices: [K] -> the same indices, longest first (stable, so ties keep their order)."""
    keys = lengths[indices]
    return indices[torch.argsort(keys, descending=True, stable=True)]


def _even_out(batches: list[list[int]], num_replicas: int) -> list[list[int]]:
    """Make the batch count a multiple of ``num_replicas`` without dropping any index.

    Splitting the largest batch keeps every index exactly once; repeating batches is the
    last resort, needed only when there are fewer examples than ranks.
    """
    target = math.ceil(len(batches) / num_replicas) * num_replicas
    batches = list(batches)
    while len(batches) < target:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]))
        if len(batches[largest]) < 2:
            break
        batch = batches[largest]
        half = len(batch) // 2
        batches[largest : largest + 1] = [batch[:half], batch[half:]]
    for i in range(target - len(batches)):
        batches.append(batches[i % len(batches)])
    return batches


def restore_input_order(outputs: Sequence[T], indices: Sequence[int]) -> list[T]:
    """Put per-example ``outputs`` (in batch order) back in dataset order.

    ``indices[i]`` is the dataset index of ``outputs[i]`` (the concatenated batches of this
    sampler). Duplicates (a dataset smaller than the number of ranks) keep the first copy.
    """
    if len(outputs) != len(indices):
        raise ValueError(f"{len(outputs)} outputs but {len(indices)} indices")
    by_index: dict[int, T] = {}
    for idx, out in zip(indices, outputs):
        by_index.setdefault(int(idx), out)
    return [by_index[i] for i in sorted(by_index)]


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose order is a function of ``seed + epoch`` alone; DDP-aware; exact ``len``.

    The plain-batching counterpart of :class:`LengthGroupedBatchSampler` for training loaders:
    a ``DataLoader(shuffle=True, generator=...)`` draws its order from a generator whose state
    moves on every epoch and is not in the checkpoint, so a resumed run would see other batches
    from the next epoch on. Ranks split the permutation like ``DistributedSampler`` (padded by
    repeating its start, or truncated with ``drop_last``).
    """

    def __init__(
        self, size: int, batch_size: int, seed: int = 0, drop_last: bool = False, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.size, self.seed, self.num_replicas, self.rank = size, seed, num_replicas, rank
        self.epoch = 0
        self._batch_size, self._drop_last = batch_size, drop_last  # private: see LengthGroupedBatchSampler

    @property
    def sampler(self) -> RandomBatchSampler:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        if self._drop_last:
            return self.size // self.num_replicas
        return math.ceil(self.size / self.num_replicas)

    def __len__(self) -> int:
        full, rest = divmod(self._per_rank(), self._batch_size)
        return full if self._drop_last else full + (rest > 0)

    def __iter__(self) -> Iterator[list[int]]:
        if self.size == 0:
            return
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        total = self._per_rank() * self.num_replicas
        order = order.repeat(math.ceil(total / self.size))[:total]
        mine = order[self.rank :: self.num_replicas].tolist()
        for start in range(0, len(self) * self._batch_size, self._batch_size):
            yield mine[start : start + self._batch_size]
