"""What every headstart DataModule shares: loader settings, stateful loaders, the model hand-off."""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from headstart.data.errors import OnError
from headstart.data.samplers import RandomBatchSampler
from headstart.data.seeded import EpochKeyedBatches, SeededSamples


class TrainLoader(StatefulDataLoader):
    """A ``StatefulDataLoader`` whose iterator comes into being at the first batch, not at ``iter()``.

    On resume Lightning calls ``iter()`` on the training loader while setting up (fit_loop.setup_data)
    and tells the sampler the restored epoch only after (on_advance_start). A multi-worker iterator
    draws its first batches from the sampler as soon as it exists, so a run resumed in epoch 1 with
    workers replayed epoch 0's order (loss rows differed from the resume point; ``num_workers=0``
    was exact because that iterator draws lazily). Deferring creation to the first ``next()`` makes
    every worker count draw the epoch Lightning restored.
    """

    def __iter__(self) -> _FirstBatchIterator:
        return _FirstBatchIterator(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A position after the epoch's last batch (a checkpoint written at that batch's end, before
        the loader raised StopIteration) is the start of the next epoch. Lightning counts that epoch
        as done; restoring "all batches yielded" made the next epoch yield none, and the run ended
        there (a run resumed from step 6 of 2 x 6 stopped at step 6)."""
        if state_dict and batches_yielded(state_dict) >= len(self):
            state_dict = {}
        super().load_state_dict(state_dict)


def batches_yielded(state: dict[str, Any]) -> int:
    """Batches a ``StatefulDataLoader`` had handed out when ``state`` was taken (either iterator kind)."""
    if "_snapshot" in state:  # multi-worker
        return int(state["_snapshot"]["_snapshot_step"]) + int(state.get("_steps_since_snapshot", 0))
    return int(state.get("_num_yielded", 0))


class _FirstBatchIterator:
    def __init__(self, loader: TrainLoader) -> None:
        self._loader = loader
        self._iterator: Any = None

    def __iter__(self) -> _FirstBatchIterator:
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = StatefulDataLoader.__iter__(self._loader)
        return next(self._iterator)


def default_num_workers() -> int:
    """One worker per spare core this process may run on (its CPU affinity, as ``taskset`` or a
    scheduler sets it; not the machine's count), at most 8; the main process keeps one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows: no affinity call
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


# What a cluster sends the whole process group to end or preempt a job (SLURM: SIGTERM, and the
# warning signal SIGUSR1/SIGUSR2 with --signal; `kill -TERM -<pgid>`).
SHUTDOWN_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def worker_start(worker_id: int) -> None:
    """A loader worker's first call: it ignores the shutdown signals (the main process owns
    shutdown: it writes last.ckpt and metrics.json, then ends its workers through the loader),
    then seeds as Lightning's ``seed_everything(workers=True)`` would have. Without this a signal
    to the process group killed the workers first, and the main process died of
    ``DataLoader worker ... is killed by signal: Terminated`` before it could save anything.
    A worker still ends when the main process does (torch's watchdog checks its parent)."""
    for signum in SHUTDOWN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)


def end_workers_at_exit() -> None:
    """At interpreter exit, multiprocessing ends daemonic children with SIGTERM and then waits for
    them, which a worker that ignores SIGTERM (see :func:`worker_start`) would never answer: a
    persistent worker of a run that ended by an error kept the process alive forever. Here they
    get SIGTERM, half a second, then SIGKILL (registered after multiprocessing's own exit hook,
    so it runs first)."""
    for process in multiprocessing.active_children():
        if process.daemon:
            process.terminate()
            process.join(0.5)
            if process.is_alive():
                process.kill()
                process.join(1.0)


@functools.cache
def register_worker_reaper() -> None:
    """Register :func:`end_workers_at_exit` once per process (when a loader with workers is made)."""
    atexit.register(end_workers_at_exit)


class DataModule(LightningDataModule):
    """Base for task datamodules.

    Subclasses set ``self.train_set`` / ``val_set`` / ``test_set`` / ``predict_set`` in ``setup``
    and ``self.collate`` (a callable list-of-samples -> batch dict). The model's needs
    (tokenizer, image size, mean/std, sample rate) arrive once through ``configure(spec)``.

    Training loaders are torchdata ``StatefulDataLoader`` so Lightning saves and restores
    their position inside an epoch when a run resumes.
    """

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.drop_last = drop_last
        self.seed = seed
        self.on_error: OnError = on_error
        self.spec: dict[str, Any] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None
        self.collate: Callable[[list[Any]], dict[str, Any]] | None = None

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Receive what the model dictates about its inputs (called once, before setup).

        Returns what the model needs back from the data, passed to ``backbone.attach(**answer)``
        (e.g. ``{"tokenizer": ...}`` trained on this data for a random-init preset); usually {}.
        """
        self.spec = dict(spec)
        return {}

    def info(self) -> dict[str, Any]:
        """What the task needs from the data (e.g. ``labels``); read once by the builder."""
        return {}

    @property
    def has_test(self) -> bool:
        return self.test_set is not None

    # ---- loaders ----------------------------------------------------------------------------
    @property
    def world(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) outside one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def batch_sampler(self, dataset: Dataset, train: bool) -> Sampler | None:
        """A batch sampler (e.g. length-grouped) for ``dataset``, or None for plain batching.

        It must be DDP-aware itself (use ``self.world``): the datamodule, not Lightning,
        splits data across ranks (the trainer presets set ``use_distributed_sampler: false``).
        """
        return None

    def _loader(self, dataset: Dataset | None, train: bool, stateful: bool) -> Any:
        if dataset is None:
            return []
        cls = TrainLoader if stateful else torch.utils.data.DataLoader
        if self.num_workers > 0:
            register_worker_reaper()
        common = dict(
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=self.collate,
            worker_init_fn=worker_start if self.num_workers > 0 else None,
            # The loader draws its workers' base seed from this generator (from torch's global one
            # without it), so creating a loader never moves the stream dropout draws from.
            generator=torch.Generator().manual_seed(self.seed),
        )
        if train:
            batches = EpochKeyedBatches(self._train_batches(dataset))
            return cls(SeededSamples(dataset, self.seed), batch_sampler=batches, **common)
        batches = self.batch_sampler(dataset, train)
        if batches is not None:
            return cls(dataset, batch_sampler=batches, **common)
        world, rank = self.world
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
        return cls(dataset, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler, **common)

    def _train_batches(self, dataset: Dataset) -> Sampler:
        """The training batch sampler: the subclass's (e.g. length-grouped) or shuffled batches.

        Either way the order is a function of (seed, epoch), so a resumed run continues with
        the batches the uninterrupted run would have seen (exact resume; data/seeded.py).
        """
        batches = self.batch_sampler(dataset, train=True)
        if batches is not None:
            return batches
        world, rank = self.world
        return RandomBatchSampler(len(dataset), self.batch_size, self.seed, self.drop_last, world, rank)

    def train_dataloader(self) -> Any:
        return self._loader(self.train_set, train=True, stateful=True)

    def val_dataloader(self) -> Any:
        return self._loader(self.val_set, train=False, stateful=False)

    def test_dataloader(self) -> Any:
        return self._loader(self.test_set, train=False, stateful=False)

    def predict_dataloader(self) -> Any:
        return self._loader(self.predict_set, train=False, stateful=False)

    def train_batches_per_epoch(self) -> int:
        """Batches one rank sees per epoch."""
        if self.train_set is None:
            self.setup("fit")
        return max(1, len(self._train_batches(self.train_set)))
