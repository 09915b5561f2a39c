"""CUDA-only checks (skipped without a GPU): bf16 training, the fused AdamW kernel."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from headstart.tasks.optim import make_optimizer
from headstart.train import train

pytestmark = pytest.mark.gpu


def test_bf16_training_on_gpu_uses_fused_adamw(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, "model.preset=tiny", "trainer=gpu", "trainer.max_steps=20", "trainer.limit_val_batches=2",
                   "trainer.num_sanity_val_steps=0", "data.batch_size=32", "test=false")
    results = train(cfg)
    assert results["global_step"] == 20 and results["val/loss"] == results["val/loss"]
    assert results["peak_memory_mb"] > 0



def test_adamw_is_fused_on_cuda() -> None:
    param = torch.nn.Parameter(torch.zeros(4, device="cuda"))
    optimizer = make_optimizer(partial(torch.optim.AdamW, lr=1e-3), [{"params": [param]}], torch.device("cuda"))
    assert optimizer.defaults["fused"] is True
