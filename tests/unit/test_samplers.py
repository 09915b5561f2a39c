"""LengthGroupedBatchSampler: coverage across ranks, less padding, determinism, exact len."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import DataLoader

from headstart.data.samplers import LengthGroupedBatchSampler, restore_input_order


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 500) for _ in range(n)]


def _padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


@pytest.mark.parametrize("n", [1000, 1003, 37])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_across_ranks_with_equal_batch_counts(n: int, replicas: int, shuffle: bool) -> None:
    lengths = _lengths(n)
    per_rank = []
    for rank in range(replicas):
        sampler = LengthGroupedBatchSampler(lengths, 16, shuffle=shuffle, seed=1, num_replicas=replicas, rank=rank)
        sampler.set_epoch(2)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler)
    assert len({len(batches) for batches in per_rank}) == 1  # DDP needs equal step counts
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == list(range(n))
    assert all(1 <= len(b) <= 16 for batches in per_rank for b in batches)


def test_drop_last_gives_full_batches_and_exact_len() -> None:
    lengths = _lengths(1003)
    seen = []
    for rank in range(3):
        sampler = LengthGroupedBatchSampler(lengths, 16, drop_last=True, num_replicas=3, rank=rank)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 62 // 3
        assert all(len(b) == 16 for b in batches)
        seen += [i for b in batches for i in b]
    assert len(seen) == len(set(seen))


def test_fewer_examples_than_ranks_still_gives_every_rank_a_batch() -> None:
    batches = [list(LengthGroupedBatchSampler([3, 4], 8, num_replicas=4, rank=r)) for r in range(4)]
    assert all(len(b) == 1 for b in batches)
    assert sorted({i for rank in batches for b in rank for i in b}) == [0, 1]


def test_less_padding_than_random_batching() -> None:
    lengths = _lengths(2000)
    grouped = list(LengthGroupedBatchSampler(lengths, 16, shuffle=True, seed=0))
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [order[i : i + 16] for i in range(0, 2000, 16)]
    assert _padding_fraction(grouped, lengths) < 0.5 * _padding_fraction(random_batches, lengths)
    assert _padding_fraction(grouped, lengths) < 0.1


def test_deterministic_per_epoch_and_different_across_epochs() -> None:
    lengths = _lengths(500)
    a = LengthGroupedBatchSampler(lengths, 8, seed=5)
    b = LengthGroupedBatchSampler(lengths, 8, seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)


def test_eval_order_is_fixed_length_sorted_and_restorable() -> None:
    lengths = _lengths(100)
    sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=False)
    batches = list(sampler)
    sampler.set_epoch(7)
    assert list(sampler) == batches
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    outputs = [f"pred-{i}" for i in flat]  # what a model would emit in batch order
    assert restore_input_order(outputs, flat) == [f"pred-{i}" for i in range(100)]


def test_works_as_dataloader_batch_sampler() -> None:
    data = list(range(50))
    sampler = LengthGroupedBatchSampler(_lengths(50), 8, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    assert len(loader) == 7
    assert sorted(torch.cat(list(loader)).tolist()) == data
    assert loader.batch_sampler.sampler is sampler  # Lightning's set_epoch hook looks there
