"""Parameter groups (no decay on norms and biases, backbone lr) and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from headstart.tasks.optim import param_groups, warmup_cosine


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 2)


def test_param_groups_split_decay_and_lrs() -> None:
    model = Tiny()
    model.backbone[0].weight.requires_grad_(False)
    groups = param_groups({"backbone": (model.backbone, 1e-5), "head": (model, 1e-3)}, weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone_no_decay", "head", "head_no_decay"}
    assert by_name["backbone_no_decay"]["lr"] == 1e-5 and by_name["backbone_no_decay"]["weight_decay"] == 0.0
    assert [p.shape for p in by_name["head"]["params"]] == [torch.Size([2, 4])]
    assert by_name["head"]["weight_decay"] == 0.1 and by_name["head"]["lr"] == 1e-3
    # every trainable parameter exactly once, the frozen one nowhere
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in model.parameters())


def test_warmup_then_cosine_to_min() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
