"""``detr_loss``: headstart's DETR matcher + set criterion vs transformers' ``ForObjectDetectionLoss``.

Same random COCO-like inputs (91 classes + no-object, 100 queries, ~20 targets per image, 6
decoder layers with auxiliary losses), timed as the loss part of one training step: matching of
every layer, all terms, backward. The two must agree (checked to 1e-5 before timing); samples/s
counts images per second of loss work. Folded in from the former ``scripts/bench_matcher.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from scripts.bench.harness import Side, SideResult


def make_inputs(batch: int, queries: int, mean_targets: int, classes: int, layers: int, seed: int = 0) -> tuple[Any, Any, list]:
    """logits [L, B, Q, C+1], boxes [L, B, Q, 4] (cxcywh in [0, 1]) and B target dicts."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, batch, queries, classes + 1, generator=g)
    boxes = torch.rand(layers, batch, queries, 4, generator=g) * 0.6 + 0.05
    sizes = torch.randint(mean_targets // 2, mean_targets * 3 // 2 + 1, (batch,), generator=g).tolist()
    targets = [
        {"class_labels": torch.randint(0, classes, (n,), generator=g),
         "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05], 1)}
        for n in sizes
    ]
    return logits.requires_grad_(), boxes.requires_grad_(), targets


def timed(step: Callable[[], torch.Tensor], batch: int, steps: int) -> SideResult:
    """One warm-up step, then ``steps`` timed steps of loss + backward."""
    loss = step()
    loss.backward()
    start = time.perf_counter()
    for _ in range(steps):
        step().backward()
    seconds = time.perf_counter() - start
    return SideResult(batch * steps / seconds, float(loss.detach()), None, seconds, batch * steps)


def comparison(
    quick: bool, batch: int = 32, queries: int = 100, targets: int = 20, classes: int = 91, layers: int = 6
) -> tuple[list[Side], dict[str, Any]]:
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    from headstart.losses.matcher import HungarianMatcher
    from headstart.losses.set_criterion import SetCriterion

    batch = 8 if quick else batch
    steps = 5 if quick else 10
    logits, boxes, target_list = make_inputs(batch, queries, targets, classes, layers)
    config = SimpleNamespace(
        class_cost=1.0,
        bbox_cost=5.0,
        giou_cost=2.0,
        num_labels=classes,
        eos_coefficient=0.1,
        auxiliary_loss=True,
        bbox_loss_coefficient=5.0,
        giou_loss_coefficient=2.0,
        decoder_layers=layers,
    )
    criterion = SetCriterion(classes, HungarianMatcher(1.0, 5.0, 2.0, solver="scipy"), eos_coef=0.1)
    aux = list(zip(logits[:-1], boxes[:-1]))

    def ours() -> torch.Tensor:
        return criterion(logits[-1], boxes[-1], target_list, aux_outputs=aux)["loss"]

    def reference() -> torch.Tensor:
        return ForObjectDetectionLoss(logits[-1], target_list, "cpu", boxes[-1], config, logits, boxes)[0]

    torch.testing.assert_close(ours(), reference(), rtol=1e-5, atol=1e-5)  # same work, same answer
    sides = [
        Side("headstart_set_criterion", lambda: timed(ours, batch, steps)),
        Side("transformers_loss", lambda: timed(reference, batch, steps)),
    ]
    settings = {
        "batch": batch,
        "queries": queries,
        "targets": targets,
        "classes": classes,
        "layers": layers,
        "steps": steps,
        "solver": "scipy",
        "device": "cpu",
    }
    return sides, settings
