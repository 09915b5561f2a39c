"""Count and report examples skipped under ``data.on_error=skip``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from headstart.callbacks.throughput import batch_size_of
from headstart.data.errors import DataError


class DataSkipReport(Callback):
    """Collates put skipped examples' ``where: reason`` in ``batch['_skipped']``; this tallies them.

    A fit whose training batches held no example at all (every one skipped) is an error, raised
    before its first validation, so that such a run never ends with rc 0 and a "best" checkpoint.
    """

    def __init__(self, show: int = 5) -> None:
        self.show = show
        self.skipped: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        self.kept_train = 0  # training examples that reached the model

    def _collect(self, stage: str, batch: Any) -> None:
        if isinstance(batch, dict) and batch.get("_skipped"):
            # A finite loader repeats epochs: keep each bad example once.
            seen = set(self.skipped[stage])
            self.skipped[stage] += [s for s in batch["_skipped"] if s not in seen]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._collect("train", batch)
        self.kept_train += batch_size_of(batch)

    def _check_trained(self) -> None:
        if self.skipped["train"] and self.kept_train == 0:
            first = self.skipped["train"][0]
            raise DataError(
                f"data.on_error=skip skipped every training example so far ({len(self.skipped['train'])}, "
                f"first {first}): nothing was trained; fix the data (data.on_error=raise stops at the first bad file)"
            )

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._check_trained()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_trained()

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._collect("val", batch)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._collect("test", batch)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def report(self) -> str | None:
        if not self.total:
            return None
        lines = [f"skipped {self.total} bad examples (data.on_error=skip):"]
        for stage, items in self.skipped.items():
            lines += [f"  {stage}: {item}" for item in items[: self.show]]
            if len(items) > self.show:
                lines.append(f"  {stage}: ... and {len(items) - self.show} more")
        return "\n".join(lines)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        text = self.report()
        if text:
            rank_zero_warn(text)
