"""The audio tasks' padding figure: per step, and the epoch's share of padded samples."""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from headstart.ops.padding import log_padding


class _Steps(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        log_padding(self, batch)
        return (self.weight - 1) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    return {"waveforms": torch.zeros(len(lengths), max(lengths)), "lengths": torch.tensor(lengths)}


def test_epoch_padding_is_the_share_of_padded_samples_not_a_mean_of_step_shares(tmp_path: Path) -> None:
    # step 1: 2 x 100 samples, 50 padded (0.25); step 2: 4 x 1000, 0 padded (0.0)
    batches = [_batch([100, 50]), _batch([1000] * 4)]
    trainer = lightning.Trainer(max_epochs=1, logger=CSVLogger(tmp_path), log_every_n_steps=1, accelerator="cpu",
                                enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(_Steps(), train_dataloaders=DataLoader(batches, batch_size=None))
    rows = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, r.split(","))) for r in rows[1:]]
    steps = [float(v["train/padding_fraction_step"]) for v in values if v.get("train/padding_fraction_step")]
    epoch = [float(v["train/padding_fraction_epoch"]) for v in values if v.get("train/padding_fraction_epoch")]
    assert steps == pytest.approx([0.25, 0.0])
    assert epoch == pytest.approx([50 / 4200])  # a mean of the step shares would say 0.125
