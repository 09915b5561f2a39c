"""Average the weights of the best k checkpoints at the end of fitting (Polyak over checkpoints)."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from headstart.run.safe_load import safe_load


def average_state_dicts(paths: list[str]) -> dict[str, torch.Tensor]:
    """Mean of the floating-point tensors of several checkpoints' state dicts (others from the first)."""
    states = [safe_load(p)["state_dict"] for p in paths]
    averaged = {}
    for key, first in states[0].items():
        if torch.is_floating_point(first):
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
        else:
            averaged[key] = first
    return averaged


class CheckpointAveraging(Callback):
    """Writes ``averaged.ckpt`` (the best checkpoint with the mean weights of the top ``k``) and
    loads those weights into the model, so testing and metrics.json use them."""

    def __init__(self, k: int = 3) -> None:
        self.k = k
        self.path: str = ""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        monitored = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
        if not monitored or len(monitored[0].best_k_models) < 2:
            return
        callback = monitored[0]
        ranked = sorted(callback.best_k_models.items(), key=lambda kv: float(kv[1]), reverse=callback.mode == "max")
        paths = [path for path, _ in ranked[: self.k]]
        averaged = average_state_dicts(paths)
        pl_module.load_state_dict(averaged)
        if trainer.is_global_zero:
            checkpoint = safe_load(paths[0])
            checkpoint["state_dict"] = averaged
            checkpoint["averaged_from"] = paths
            self.path = str(Path(callback.dirpath) / "averaged.ckpt")
            torch.save(checkpoint, self.path)
        trainer.strategy.barrier()
