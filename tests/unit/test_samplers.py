"""LengthGroupedBatchSampler: coverage across ranks, less padding, determinism, exact len."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import DataLoader

from headstart.data.samplers import LengthGroupedBatchSampler, RandomBatchSampler, restore_input_order


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


# ---- exact resume: shuffled batches and per-example seeds (data/seeded.py) --------------------


@pytest.mark.parametrize("n", [37, 40])
@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_random_batches_split_like_distributed_sampler(n: int, replicas: int, drop_last: bool) -> None:
    from torch.utils.data import DistributedSampler

    per_rank = []
    for rank in range(replicas):
        sampler = RandomBatchSampler(n, 8, seed=3, drop_last=drop_last, num_replicas=replicas, rank=rank)
        sampler.set_epoch(1)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler)
        assert all(len(b) == 8 for b in per_rank[-1]) or not drop_last
        # the same number of examples per rank as DistributedSampler would give it
        reference = DistributedSampler(range(n), num_replicas=replicas, rank=rank, drop_last=drop_last)
        examples = sum(len(b) for b in per_rank[-1])
        assert examples == (len(reference) // 8 * 8 if drop_last else len(reference))
    assert len({len(b) for b in per_rank}) == 1
    seen = {i for batches in per_rank for b in batches for i in b}
    assert seen == set(range(n)) or drop_last


def test_random_batches_are_a_function_of_seed_and_epoch() -> None:
    def epoch(e: int, seed: int = 0) -> list[list[int]]:
        sampler = RandomBatchSampler(50, 4, seed=seed)
        sampler.set_epoch(e)
        return list(sampler)

    assert epoch(2) == epoch(2)  # a resumed run sees the batches of the uninterrupted one
    assert epoch(2) != epoch(3) and epoch(2) != epoch(2, seed=1)
    assert sorted(i for b in epoch(2) for i in b) == list(range(50))


class _Noisy(torch.utils.data.Dataset):
    """An 'augmenting' dataset: each example draws from the global torch, NumPy and Python RNGs."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> tuple[int, float]:
        import numpy as np

        return i, float(torch.rand(())) + float(np.random.rand()) + random.random()


def test_seeded_examples_do_not_depend_on_order_or_global_rng_and_leave_it_untouched() -> None:
    from headstart.data.seeded import EpochKeyedBatches, SeededSamples

    data = SeededSamples(_Noisy(), seed=5)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = {data[(1, i)] for i in range(20)}
    assert torch.equal(torch.get_rng_state(), before)  # dropout's stream is not moved by loading
    torch.manual_seed(123)
    again = {data[(1, i)] for i in reversed(range(20))}  # another order, another global state
    assert first == again
    assert data[(2, 0)] != data[(1, 0)]  # a new epoch draws new augmentations

    batches = EpochKeyedBatches(RandomBatchSampler(20, 6, seed=5))
    batches.set_epoch(4)
    keys = list(batches)
    assert all(epoch == 4 for batch in keys for epoch, _ in batch) and batches.sampler is batches
    assert [[i for _, i in batch] for batch in keys] == [b for b in batches.batches]


def test_stateful_loader_resumes_mid_epoch_with_the_same_examples() -> None:
    """Stop a StatefulDataLoader after 2 batches, restore its state in a new loader built the same
    way (a new process in real life, with other global RNG states): the rest of the epoch and the
    next epoch are identical, with workers too."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    from headstart.data.seeded import EpochKeyedBatches, SeededSamples

    def loader() -> StatefulDataLoader:
        batches = EpochKeyedBatches(RandomBatchSampler(20, 4, seed=9))
        return StatefulDataLoader(SeededSamples(_Noisy(), 9), batch_sampler=batches, num_workers=1,
                                  generator=torch.Generator().manual_seed(9))

    def epochs(dl: StatefulDataLoader, start: int, skip: int = 0) -> list:
        out = []
        for e in range(start, 2):
            dl.batch_sampler.set_epoch(e)
            out += [b[1].tolist() for b in dl][skip if e == start else 0 :]
        return out

    whole = epochs(loader(), 0)
    first = loader()
    first.batch_sampler.set_epoch(0)
    it = iter(first)
    next(it), next(it)
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    torch.manual_seed(999)
    assert epochs(resumed, 0) == whole[2:]


def test_default_workers_follow_the_cpu_affinity_not_the_machine() -> None:
    """Pinned to one core (taskset -c 0), a run starts no loader worker to fight it for that core."""
    import os

    from headstart.data.base import default_num_workers

    saved = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(saved)})
        assert default_num_workers() == 0
        os.sched_setaffinity(0, saved)
        assert default_num_workers() == min(8, len(saved) - 1)
    finally:
        os.sched_setaffinity(0, saved)


# ---- the training loader's resume position (data/base.py:TrainLoader) -----------------------------
class _Indices(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 48

    def __getitem__(self, i: int) -> int:
        return i


def _train_loader(workers: int):  # noqa: ANN202
    from headstart.data.base import TrainLoader
    from headstart.data.seeded import EpochKeyedBatches, SeededSamples

    batches = EpochKeyedBatches(RandomBatchSampler(48, 8, 0, False, 1, 0))
    return TrainLoader(SeededSamples(_Indices(), 0), batch_sampler=batches, num_workers=workers, collate_fn=list)


def _epochs(workers: int) -> tuple[list[list[list[int]]], list[dict]]:
    """The two epochs' batches of an uninterrupted loader, and its state after every batch."""
    loader, seen, states = _train_loader(workers), [], []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        seen.append([])
        for batch in loader:
            seen[-1].append(batch)
            states.append(loader.state_dict())
    return seen, states


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("position", [3, 5, 8])
def test_a_resumed_loader_draws_the_restored_epoch_when_told_it_after_iter(workers: int, position: int) -> None:
    """Lightning's order on resume: load_state_dict, iter() (fit_loop.setup_data), then set_epoch.
    Before: a worker iterator drew its first batches at iter(), so in epoch 1 it replayed epoch 0;
    a state taken after an epoch's last batch (position 5) gave the next epoch no batches."""
    (first, second), states = _epochs(workers)
    everything = first + second
    loader = _train_loader(workers)
    loader.load_state_dict(states[position])
    iterator = iter(loader)
    epoch = (position + 1) // 6
    loader.batch_sampler.set_epoch(epoch)
    assert list(iterator) == everything[position + 1: 6 * (epoch + 1)]  # position 5: all of epoch 1
