"""Save and restore RNG states in checkpoints (Lightning's checkpoint holds none)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RNGState(Callback):
    """Python, NumPy, torch (and CUDA) generator states go into the checkpoint and come back on resume.

    States are stored as tensors and plain lists so the checkpoint loads with ``weights_only=True``.
    A loaded state is applied at the start of the first training batch, not when the checkpoint
    is read: between the two, a resumed run builds loaders and may run a sanity check, which the
    uninterrupted run did not do at that point, so applying earlier would shift every later draw.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None


def restore(state: dict[str, Any]) -> None:
    """Set the global generators to ``state`` (as written by :meth:`RNGState.state_dict`)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
