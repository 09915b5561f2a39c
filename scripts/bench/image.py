"""``image``: tiny ViT and tiny ConvNeXT (headstart's ``tiny`` presets, random init) on
cifar10_small (an ImageFolder of 32 px CIFAR-10 images: train/ and val/), headstart vs a plain loop.

Both sides train the same modules (headstart's backbone and head, from the same initial state)
on the same decoded, augmented batches (headstart's dataset and collator); the plain loop is
AdamW + linear schedule + clipping with nothing else, so the ratio is headstart's overhead
per step (goal: >= 1.0x within noise, i.e. overhead <= 3%).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from scripts.bench.harness import Side, SideResult
from scripts.bench.hs_side import built_like_train, check_same_init, run_headstart
from scripts.bench.peers import CountingCollator, Recipe, run_plain
from scripts.bench.text import SHARED, recipe_overrides


class ImageClassifier(nn.Module):
    """pixel_values [B, 3, H, W] (, labels [B]) -> {"logits": [B, C] (, "loss")}."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        logits = self.head(self.backbone(pixel_values).pooled)
        result = {"logits": logits}
        if labels is not None:
            result["loss"] = nn.functional.cross_entropy(logits, labels)
        return result


def no_positions(batch: dict[str, Any]) -> tuple[int, int]:
    return 0, 0  # fixed-size images: no padding


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def comparison(quick: bool, steps: int | None, model: str) -> tuple[list[Side], dict[str, Any]]:
    """headstart vs plain loop for one tiny image model (``vit`` or ``convnext``)."""
    recipe = Recipe(batch_size=64, lr=1e-3, epochs=1 if quick else 3, max_steps=steps or (30 if quick else -1))
    overrides = [
        "task=image_classification", f"model={model}", "model.preset=tiny", "data.source=folder",
        f"data.path={SHARED / 'vision' / 'cifar10_small'}", "data.image_size=32", "~callbacks.media",
        *recipe_overrides(recipe, None),
    ]
    built = built_like_train(overrides)
    check_same_init(built, built_like_train(overrides))
    built.datamodule.setup("fit")
    train, evaluate = built.datamodule.train_set, built.datamodule.val_set
    init = ImageClassifier(copy.deepcopy(built.task.backbone), copy.deepcopy(built.task.head))
    init_state = copy.deepcopy(init.state_dict())
    collate = built.datamodule.collate

    def plain() -> SideResult:
        torch.manual_seed(recipe.seed)
        model_ = copy.deepcopy(init)
        model_.load_state_dict(init_state)
        sampler = torch.utils.data.RandomSampler(train, generator=torch.Generator().manual_seed(recipe.seed))
        return run_plain(model_, train, evaluate, CountingCollator(collate, no_positions), recipe, sampler, accuracy)

    sides = [Side("headstart", lambda: run_headstart(overrides, "val/acc")), Side("plain_loop", plain)]
    settings = {"overrides": overrides, "recipe": vars(recipe), "metric": "val/acc", "model": model,
                "train_examples": len(train), "eval_examples": len(evaluate)}
    return sides, settings
