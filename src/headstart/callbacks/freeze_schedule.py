"""Freeze and unfreeze parameters by name at given optimizer steps; works with any model.

Each event is ``{at_step: N, freeze: [patterns], unfreeze: [patterns]}``: from step N on, the
parameters of the LightningModule whose names match a ``freeze`` pattern stop receiving
gradients, then those matching an ``unfreeze`` pattern receive them again. Patterns are
``fnmatch`` globs over ``named_parameters()`` names (``backbone.model.*``, ``*.embed_positions.*``);
``*`` is everything. Events apply in step order; on resume every event up to the restored step
is re-applied, so the state after a restart is the state the schedule says.

Frozen parameters stay in the optimizer (its groups are made before training, with every
trainable parameter): their gradients are None, so AdamW leaves them untouched, and they
start moving when unfrozen. (Under DDP, set ``find_unused_parameters=true`` in the strategy,
as for any model whose trained subset changes.)

BART's translation recipe (a new source encoder trained alone for N steps, then everything)::

    events:
      - {at_step: 0, freeze: ["*"], unfreeze: ["backbone.source_encoder.*",
                                               "backbone.model.model.encoder.embed_positions.*"]}
      - {at_step: 500, unfreeze: ["*"]}
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


def set_trainable(module: nn.Module, freeze: Sequence[str] = (), unfreeze: Sequence[str] = ()) -> dict[str, int]:
    """Apply one event to ``module``; returns how many parameters each side matched."""
    counts = {"frozen": 0, "unfrozen": 0}
    for name, param in module.named_parameters():
        if any(fnmatchcase(name, p) for p in freeze):
            param.requires_grad_(False)
            counts["frozen"] += 1
    for name, param in module.named_parameters():
        if any(fnmatchcase(name, p) for p in unfreeze):
            param.requires_grad_(True)
            counts["unfrozen"] += 1
    return counts


class FreezeSchedule(Callback):
    """events: list of {at_step, freeze, unfreeze} (see module docstring)."""

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        self.events = sorted(
            ({"at_step": int(e.get("at_step", 0)), "freeze": list(e.get("freeze") or []),
              "unfreeze": list(e.get("unfreeze") or [])} for e in events),
            key=lambda e: e["at_step"],
        )
        self.applied = 0

    def _check_patterns(self, module: nn.Module) -> None:
        names = [name for name, _ in module.named_parameters()]
        for event in self.events:
            for pattern in event["freeze"] + event["unfreeze"]:
                if not any(fnmatchcase(n, pattern) for n in names):
                    raise ValueError(f"freeze schedule: pattern '{pattern}' matches no parameter of the model")

    def apply_until(self, module: nn.Module, step: int) -> None:
        """Apply, in order, every event not applied yet whose ``at_step`` <= ``step``."""
        while self.applied < len(self.events) and self.events[self.applied]["at_step"] <= step:
            event = self.events[self.applied]
            counts = set_trainable(module, event["freeze"], event["unfreeze"])
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            rank_zero_info(f"freeze schedule at step {step}: froze {counts['frozen']}, unfroze "
                           f"{counts['unfrozen']} tensors; {trainable:,} trainable parameters")
            self.applied += 1

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_patterns(pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.applied = 0  # a resumed run re-applies its history
        self.apply_until(pl_module, trainer.global_step)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self.apply_until(pl_module, trainer.global_step)
