"""Log a few validation samples per epoch as W&B media (what they show is the task's business)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class ValidationMedia(Callback):
    """On the first validation batch of every ``every_n_epochs``-th epoch, log ``task.media(...)``."""

    def __init__(self, max_items: int = 8, every_n_epochs: int = 1) -> None:
        self.max_items = max_items
        self.every_n_epochs = every_n_epochs

    @rank_zero_only
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if batch_idx != 0 or trainer.sanity_checking or not loggers or outputs is None:
            return
        if trainer.current_epoch % self.every_n_epochs != 0:
            return
        media = pl_module.media(batch, outputs, self.max_items)
        if media:
            for logger in loggers:
                logger.experiment.log({**media, "trainer/global_step": trainer.global_step})
