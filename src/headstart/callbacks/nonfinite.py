"""NaN/Inf policy: stop with a message naming the step and the batch's examples (``stop``), or
drop the update and count it (``skip``); a checkpoint is never written from non-finite weights.

``stop`` keeps host syncs out of the hot loop: each step folds ``isfinite(loss)`` into a device
flag that remembers the first bad step and its loss; the host looks at it only every
``check_every_n_steps`` steps and before any checkpoint is written. ``skip`` needs one host
sync per step (the optimizer step must know whether to run).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

# Batch keys that name the examples in it, in order of preference.
ID_KEYS = ("ids", "id", "paths", "where", "index")
HINT = "lower optim.lr, set trainer.gradient_clip_val, or use callbacks.nonfinite.action=skip"


class NonFiniteLossError(RuntimeError):
    """The loss or the weights went NaN/Inf; the message names the step and the batch."""


def batch_ids(batch: Any) -> Any:
    """What the batch carries to name its examples (a list of paths or ids, or an index tensor)."""
    if isinstance(batch, dict):
        for key in ID_KEYS:
            if key in batch and batch[key] is not None and len(batch[key]):
                return batch[key]
    return None


def describe_ids(ids: Any, limit: int = 8) -> str:
    if ids is None:
        return "the batch carries no example ids"
    items = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    shown = ", ".join(str(i) for i in items[:limit])
    return f"examples {shown}" + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def floating_tensors(value: Any, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every floating-point tensor in a checkpoint-like nest of dicts / lists, with its key path
    (``state_dict.head.fusions.0.bn.running_var``, ``callbacks.EMA.shadow.3``, ``optimizer_states.0...``)."""
    if isinstance(value, torch.Tensor):
        return [(path, value)] if torch.is_floating_point(value) or torch.is_complex(value) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    found: list[tuple[str, torch.Tensor]] = []
    for key, item in items:
        found += floating_tensors(item, f"{path}.{key}" if path else str(key))
    return found


def first_nonfinite(value: Any) -> tuple[str, int] | None:
    """(key path of the first non-finite tensor, how many are) in ``value``, or None: parameters,
    buffers (BatchNorm running statistics), EMA / averaged copies held by callbacks and optimizer
    states alike. One host sync (run only when a checkpoint is about to be written)."""
    tensors = floating_tensors(value)
    if not tensors:
        return None
    flags = torch.stack([torch.isfinite(t.detach()).all().to("cpu") for _, t in tensors])
    if bool(flags.all()):
        return None
    bad = [name for (name, _), ok in zip(tensors, flags.tolist()) if not ok]
    return bad[0], len(bad)


# Callbacks whose tensors are scores, not weights: their state starts at +-inf by design
# (ModelCheckpoint's best_model_score / kth_value, EarlyStopping's best_score).
SCORE_CALLBACKS = ("ModelCheckpoint", "EarlyStopping")


def weights_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Lightning checkpoint that hold model state: ``state_dict`` (parameters and
    buffers), ``optimizer_states``, and every callback's state but the score keepers'."""
    callbacks = {name: state for name, state in (checkpoint.get("callbacks") or {}).items()
                 if not str(name).startswith(SCORE_CALLBACKS)}
    return {"state_dict": checkpoint.get("state_dict", {}), "optimizer_states": checkpoint.get("optimizer_states", []),
            "callbacks": callbacks}


class NonFiniteGuard(Callback):
    """``action``: ``stop`` ends the run (one line: step, epoch, batch, example ids, loss);
    ``skip`` drops an update whose gradients are not finite, counts it (metrics.json
    ``nonfinite_skipped``) and ends the run past ``max_skipped`` skips.
    Either way, a checkpoint about to be written with any non-finite tensor (weights, buffers such
    as BatchNorm statistics, a callback's EMA or averaged copy, optimizer state) is refused and the
    run ends, so the last good checkpoint stays.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", check_every_n_steps: int = 10, max_skipped: int = 10) -> None:
        self.action = action
        self.every = max(1, check_every_n_steps)
        self.max_skipped = max_skipped
        self.skipped_steps = 0
        self._first_step: torch.Tensor | None = None  # [] long: first step with a non-finite loss, -1 if none
        self._first_loss: torch.Tensor | None = None  # [] float: that loss
        self._recent: deque[tuple[int, int, int, Any]] = deque(maxlen=self.every + 2)  # (step, epoch, batch_idx, ids)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # {}: the step was skipped
        if self.action != "stop" or not isinstance(loss, torch.Tensor):
            return
        step = trainer.global_step
        self._recent.append((step, trainer.current_epoch, batch_idx, batch_ids(batch)))
        loss = loss.detach().float()
        if self._first_step is None:
            self._first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_loss = torch.zeros((), device=loss.device)
        newly_bad = (self._first_step < 0) & ~torch.isfinite(loss).all()
        self._first_step = torch.where(newly_bad, torch.full_like(self._first_step, step), self._first_step)
        self._first_loss = torch.where(newly_bad, loss.reshape(-1)[0], self._first_loss)
        if step % self.every == 0:
            self._raise_if_bad(trainer)

    def _raise_if_bad(self, trainer: Trainer) -> None:
        """The one host sync of ``stop`` (all ranks decide together, so none waits alone)."""
        bad = self._first_step is not None and int(self._first_step) >= 0
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(self._message(trainer))

    def _message(self, trainer: Trainer) -> str:
        if self._first_step is None or int(self._first_step) < 0:
            return f"loss is not finite on another rank by step {trainer.global_step}; {HINT}"
        step, value = int(self._first_step), float(self._first_loss)
        where = next(((e, b, ids) for s, e, b, ids in self._recent if s == step), None)
        place = f"epoch {where[0]}, batch {where[1]}, {describe_ids(where[2])}" if where else f"epoch {trainer.current_epoch}"
        return f"loss is {value} at step {step} ({place}); {HINT}"

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer) -> None:
        if self.action != "skip":
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            return
        self.skipped_steps += 1
        if self.skipped_steps == 1:
            rank_zero_info(f"non-finite gradients at step {trainer.global_step}: update skipped (callbacks.nonfinite.action=skip)")
        if self.skipped_steps > self.max_skipped:
            raise NonFiniteLossError(
                f"{self.skipped_steps} updates skipped for non-finite gradients by step {trainer.global_step} "
                f"(callbacks.nonfinite.max_skipped={self.max_skipped}); {HINT.split(', or')[0]}"
            )
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Raising here stops the file from being written: the previous checkpoint stays intact."""
        if self.action == "stop":
            self._raise_if_bad(trainer)
        bad = first_nonfinite(weights_of(checkpoint))
        if bad is not None:
            name, count = bad
            raise NonFiniteLossError(
                f"{count} tensor{'s' if count > 1 else ''} of the checkpoint not finite at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}), first {name}; no checkpoint written, the last good one is kept; {HINT}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
