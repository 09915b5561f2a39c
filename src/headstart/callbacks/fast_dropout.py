"""Cheaper dropout masks while a model trains on CPU (``headstart.ops.dropout``)."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from headstart.ops.dropout import restore_attention, restore_dropout, swap_dropout, use_fast_sdpa


class FastCPUDropout(Callback):
    """For the fit only, on CPU: every plain ``nn.Dropout`` becomes a ``FastDropout`` (same p,
    16-bit draws, a third of the cost on CPU), and transformers models that run "sdpa" attention
    run ``headstart_sdpa`` (the same math path with that mask on the attention probabilities while
    training; "sdpa" itself otherwise). Both are undone when the fit ends, so evaluation, export
    and later runs see the model as it was built. Other devices: nothing. Remove with
    ``~callbacks.fast_dropout`` to train with torch's own dropout.

    Measured on MiniLM (batch 32 x 30 tokens, 2 threads, fwd + bwd + fused AdamW): 466 ms a step
    with torch's dropout, 451 ms with FastDropout modules, 435 ms with the attention path too."""

    def __init__(self) -> None:
        self._swapped: list = []
        self._attention: list = []

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cpu" and not self._swapped and not self._attention:
            self._swapped = swap_dropout(pl_module)
            self._attention = use_fast_sdpa(pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        restore_dropout(self._swapped)
        restore_attention(self._attention)
        self._swapped, self._attention = [], []
