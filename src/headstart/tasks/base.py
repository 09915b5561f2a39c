"""The thin base every task shares: optimizer wiring, schedule length, logging, checkpoint meta.

Task-specific work (forward, steps, metrics, post-processing, media) lives in each task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import nn

from headstart.tasks.optim import make_optimizer, param_groups


class Task(LightningModule):
    """Base LightningModule: a backbone plus task parts, trained with injected optimizer/schedule.

    optimizer: partial of a torch optimizer (lr, weight_decay, betas...); receives param groups.
    scheduler: partial taking (optimizer, total_steps) -> LR scheduler, or None.
    backbone_lr: learning rate of the backbone (None: the optimizer's lr for everything).
    lr_interval: step the schedule every optimizer step or every epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.backbone_lr = backbone_lr
        self.lr_interval = lr_interval
        # One line saying what of a model.checkpoint task model's head was kept (tasks/export.py).
        self.kept_head: str | None = None
        # Filled by headstart.run.build: resolved config, data info, backbone config.
        # Saved into every checkpoint so eval/predict rebuild the run without the hub.
        self.meta: dict[str, Any] = {}

    # ---- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        keywords = self.optimizer_factory.keywords if isinstance(self.optimizer_factory, partial) else {}
        lr = float(keywords.get("lr", 1e-3))
        weight_decay = float(keywords.get("weight_decay", 0.0))
        backbone_lr = self.backbone_lr or lr
        # A backbone may put parts on their own lr first (DETR's CNN); a parameter stays in the
        # first group it appears in.
        modules = dict(self.backbone.lr_groups(backbone_lr)) if hasattr(self.backbone, "lr_groups") else {}
        modules.update({"backbone": (self.backbone, backbone_lr), "head": (self, lr)})
        groups = param_groups(modules, weight_decay)
        optimizer = make_optimizer(self.optimizer_factory, groups, self.device, allow_fused=not self._clips_in_mixed_precision())
        if self.scheduler_factory is None:
            return optimizer
        total = self.total_training_steps() if self.lr_interval == "step" else max(1, self.trainer.max_epochs)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_interval}}

    def _clips_in_mixed_precision(self) -> bool:
        """Whether the fit clips gradients under 16/bf16 mixed precision (no fused optimizer then)."""
        trainer = self._trainer
        clip = getattr(trainer, "gradient_clip_val", None)
        return bool(clip) and "mixed" in str(getattr(trainer, "precision", ""))

    def total_training_steps(self) -> int:
        """Optimizer steps of the whole fit, from the datamodule's size.

        Not ``trainer.estimated_stepping_batches``: calling it here stops Lightning from
        restoring the train loader's state on resume (Lightning #20550).
        """
        trainer = self.trainer
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return int(trainer.max_steps)
        per_epoch = int(trainer.datamodule.train_batches_per_epoch())
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            per_epoch = min(per_epoch, limit)
        elif limit is not None:
            per_epoch = int(per_epoch * float(limit))
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        return max(1, math.ceil(per_epoch / trainer.accumulate_grad_batches) * epochs)

    # ---- logging --------------------------------------------------------------------------
    def log_terms(self, stage: str, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """Log every loss term as ``<stage>/<name>``: per step in training, per epoch otherwise."""
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in terms.items() if value.numel() == 1},
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=batch_size,
            sync_dist=not on_step,
        )

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        """W&B media for a few validation samples (name -> list of wandb objects). None by default."""
        return {}

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """Pictures (PNG, HTML) of predict.py's records under ``out_dir`` (``predict.visualize=true``);
        returns the files written. Every task draws its own (``headstart.viz``), and a record that
        cannot be drawn is a warning, never an error; this default draws nothing."""
        return []

    # ---- export (headstart.export, issue 23) ---------------------------------------------------
    def hf_export(self, validate_only: bool = False) -> Any:
        """The transformers model computing what this task computes, with its processors
        (:class:`headstart.tasks.export.HFExport`); tasks with an exact counterpart override this.
        ``validate_only``: only raise ExportError when there is no exact export (train.py asks
        before fitting when ``export=true``, so a run does not learn it at the end); returns None."""
        from headstart.tasks.export import ExportError

        raise ExportError(f"{type(self).__name__}: this task has no export to the Hugging Face format yet")

    # ---- checkpoint meta ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["headstart"] = self.meta

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run keeps the meta its own build wrote (this command's composition, format and
        # rebuild data); the killed run's meta was read and checked before building (run/resume.py).
        self.meta = self.meta or checkpoint.get("headstart", {})
