"""Stop on (or skip) a NaN/Inf loss instead of training on garbage."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class NonFiniteLossError(RuntimeError):
    pass


class NonFiniteGuard(Callback):
    """action=stop: every ``check_every_n_steps`` steps, a non-finite loss ends the run with a message
    (checked only then, to keep host syncs out of the hot loop; a NaN persists in the weights, so
    it is still caught). action=skip: every step, an update whose gradients are not finite is
    dropped (its grads set to None, so the optimizer leaves the weights alone); this costs one
    host sync per step.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", check_every_n_steps: int = 10) -> None:
        self.action = action
        self.every = max(1, check_every_n_steps)
        self.skipped_steps = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.action != "stop" or trainer.global_step % self.every != 0:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx}); "
                "lower optim.lr, set trainer.gradient_clip_val, or use callbacks.nonfinite.action=skip"
            )

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer) -> None:
        if self.action != "skip":
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not bool(torch.stack([g.detach().float().norm() for g in grads]).isfinite().all()):
            self.skipped_steps += 1
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
