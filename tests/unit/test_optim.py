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


def test_adamw_is_fused_on_cpu_and_steps_like_the_unfused_one() -> None:
    """CPU gets torch's fused AdamW kernel (as transformers' Trainer does); a config that sets
    foreach/fused keeps its choice; an optimizer without the kernel is built as configured."""
    from functools import partial

    from headstart.tasks.optim import make_optimizer

    torch.manual_seed(0)
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.load_state_dict(a.state_dict())
    cpu = torch.device("cpu")
    fused = make_optimizer(partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.01), [{"params": list(a.parameters())}], cpu)
    plain = make_optimizer(partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.01, foreach=False),
                           [{"params": list(b.parameters())}], cpu)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    x = torch.randn(16, 8)
    for _ in range(5):
        for model, optimizer in ((a, fused), (b, plain)):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    rprop = make_optimizer(partial(torch.optim.Rprop, lr=1e-2), [{"params": list(a.parameters())}], cpu)
    assert isinstance(rprop, torch.optim.Rprop)
