"""Benchmark: headstart's DETR matcher + set criterion vs transformers' ForObjectDetectionLoss.

Same random inputs (COCO-like: 91 classes + no-object, 6 decoder layers with auxiliary losses),
timed as one training step of the loss: matching of every layer, all terms, backward.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_matcher.py [--devices cpu cuda] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

from headstart.losses.matcher import HungarianMatcher, batched_gpu_solver
from headstart.losses.set_criterion import SetCriterion


def make_inputs(batch: int, queries: int, mean_targets: int, classes: int, layers: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, batch, queries, classes + 1, generator=g)
    boxes = torch.rand(layers, batch, queries, 4, generator=g) * 0.6 + 0.05
    sizes = torch.randint(mean_targets // 2, mean_targets * 3 // 2 + 1, (batch,), generator=g).tolist()
    targets = [
        {
            "class_labels": torch.randint(0, classes, (n,), generator=g).to(device),
            "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05], 1).to(device),
        }
        for n in sizes
    ]
    return logits.to(device), boxes.to(device), targets


def time_step(step: Callable[[], torch.Tensor], device: str, warmup: int, repeats: int) -> float:
    """Median seconds of step() + backward."""
    times = []
    for i in range(warmup + repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(device: str, solver: str, args: argparse.Namespace) -> None:
    logits, boxes, targets = make_inputs(args.batch, args.queries, args.targets, args.classes, args.layers, device)
    logits.requires_grad_()
    boxes.requires_grad_()
    config = SimpleNamespace(
        class_cost=1.0, bbox_cost=5.0, giou_cost=2.0, num_labels=args.classes, eos_coefficient=0.1,
        auxiliary_loss=True, bbox_loss_coefficient=5.0, giou_loss_coefficient=2.0, decoder_layers=args.layers,
    )
    matcher = HungarianMatcher(1.0, 5.0, 2.0, solver=solver)
    criterion = SetCriterion(args.classes, matcher, eos_coef=0.1).to(device)
    aux = list(zip(logits[:-1], boxes[:-1]))

    def ours() -> torch.Tensor:
        return criterion(logits[-1], boxes[-1], targets, aux_outputs=aux)["loss"]

    def reference() -> torch.Tensor:
        return ForObjectDetectionLoss(logits[-1], targets, device, boxes[-1], config, logits, boxes)[0]

    torch.testing.assert_close(ours(), reference(), rtol=1e-5, atol=1e-5)  # same work, same answer
    t_ours = time_step(ours, device, args.warmup, args.repeats)
    t_ref = time_step(reference, device, args.warmup, args.repeats)
    used = "torch_linear_assignment" if solver == "auto" and device == "cuda" and batched_gpu_solver() else "scipy"
    print(
        f"{device:5s} B={args.batch} Q={args.queries} T~{args.targets} C+1={args.classes + 1} L={args.layers} "
        f"solver={used}: headstart {t_ours * 1e3:8.2f} ms  transformers {t_ref * 1e3:8.2f} ms  "
        f"speed-up x{t_ref / t_ours:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--solvers", nargs="+", default=["auto"], choices=["auto", "scipy"], help="matcher solver(s)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--classes", type=int, default=91)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda  not available, skipped")
            continue
        for solver in args.solvers:
            bench(device, solver, args)


if __name__ == "__main__":
    main()
