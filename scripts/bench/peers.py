"""The two peers headstart is compared with: transformers' ``Trainer`` and a plain PyTorch loop.

Both get what the headstart side gets: the same initial weights (a state_dict taken once), the
same pre-processed examples and split, batch size, steps, AdamW (no decay on biases and norms),
linear schedule with warmup, gradient clipping at 1.0, fp32, and the process's thread count.
Training throughput is timed around the training loop only; evaluation runs afterwards on the
same evaluation examples and is scored by the caller's ``score(predictions, labels)``.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from scripts.bench.harness import SideResult


@dataclass
class Recipe:
    """The training settings every side of one comparison shares."""

    batch_size: int
    lr: float
    epochs: int
    max_steps: int = -1  # > 0: stop after this many optimizer steps (quick mode)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42

    def total_steps(self, num_examples: int) -> int:
        return self.max_steps if self.max_steps > 0 else self.epochs * math.ceil(num_examples / self.batch_size)


class CountingCollator:
    """Wraps a collator; counts examples and real / all padded positions.

    positions: batch -> (real, total) positions; default: the sum and size of ``attention_mask``.
    """

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]],
                 positions: Callable[[dict[str, Any]], tuple[int, int]] | None = None) -> None:
        self.collate, self.positions = collate, positions or mask_positions
        self.reset()

    def reset(self) -> None:
        self.samples, self.real, self.total = 0, 0, 0

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = self.collate(items)
        real, total = self.positions(batch)
        self.samples += len(items)
        self.real += real
        self.total += total
        return batch

    @property
    def padding_fraction(self) -> float | None:
        return 1 - self.real / self.total if self.total else None


def mask_positions(batch: dict[str, Any]) -> tuple[int, int]:
    mask = batch.get("attention_mask")
    return (int(mask.sum()), mask.numel()) if isinstance(mask, torch.Tensor) else (0, 0)


def no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or "norm" in name.lower() or name.endswith(".bias")


def adamw(model: nn.Module, recipe: Recipe) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not no_decay(n, p)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and no_decay(n, p)]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8)


def run_plain(
    model: nn.Module, train: Sequence[dict[str, Any]], evaluate: Sequence[dict[str, Any]], collate: CountingCollator,
    recipe: Recipe, train_sampler: torch.utils.data.Sampler, score: Callable[[np.ndarray, np.ndarray], float],
    outputs_key: str = "logits",
) -> SideResult:
    """The loop a researcher writes: zero_grad, forward, backward, clip, step, schedule."""
    from transformers import get_linear_schedule_with_warmup

    total = recipe.total_steps(len(train))
    optimizer = adamw(model, recipe)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(recipe.warmup_ratio * total), total)
    loader = DataLoader(train, batch_size=recipe.batch_size, sampler=train_sampler, collate_fn=collate)
    model.train()
    collate.reset()
    step, start = 0, time.perf_counter()
    while step < total:
        for batch in loader:
            loss = model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            optimizer.step()
            schedule.step()
            step += 1
            if step >= total:
                break
    seconds = time.perf_counter() - start
    samples, padding, positions = collate.samples, collate.padding_fraction, collate.total
    preds, labels = predict_in_order(model, evaluate, collate, recipe.batch_size, outputs_key)
    return SideResult(samples / seconds, score(preds, labels), padding, seconds, samples, positions / seconds)


def _pad_cat(arrays: list[np.ndarray], fill: float) -> np.ndarray:
    """Concatenate [B, L, ...] arrays of different L along B, padding L with ``fill``."""
    if arrays[0].ndim < 2:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    padded = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill) for a in arrays]
    return np.concatenate(padded)


@torch.no_grad()
def predict_in_order(
    model: nn.Module, evaluate: Sequence[dict[str, Any]], collate: CountingCollator, batch_size: int, outputs_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs and labels for the evaluation examples in their order (-100-padded)."""
    model.eval()
    preds, labels = [], []
    for batch in DataLoader(evaluate, batch_size=batch_size, collate_fn=collate):
        preds.append(model(**batch)[outputs_key].float().numpy())
        labels.append(batch["labels"].numpy())
    model.train()
    return _pad_cat(preds, -100.0), _pad_cat(labels, -100)


def run_trainer(
    model: nn.Module, train: Sequence[dict[str, Any]], evaluate: Sequence[dict[str, Any]], collate: CountingCollator,
    recipe: Recipe, score: Callable[[np.ndarray, np.ndarray], float], lengths: Sequence[int] | None = None,
    order: Sequence[int] | None = None,
) -> SideResult:
    """transformers' Trainer with ``train_sampling_strategy='group_by_length'`` (``lengths``: given
    explicitly where the examples have no ``input_ids``, e.g. raw audio). ``order``: example indices
    to train on in this order instead (short runs: the same batches as the other sides)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            collate.reset()
            self.start = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.perf_counter() - self.start
            self.samples, self.padding, self.positions = collate.samples, collate.padding_fraction, collate.total

    class LengthTrainer(Trainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if order is not None:
                return list(order)
            if lengths is None:
                return super()._get_train_sampler(train_dataset)
            return LengthGroupedSampler(self.args.train_batch_size, lengths=list(lengths))

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            if lengths is None:
                return super()._get_eval_sampler(eval_dataset)
            return torch.utils.data.SequentialSampler(eval_dataset)

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_trainer_"), per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size, learning_rate=recipe.lr, weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio, lr_scheduler_type="linear", num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps, max_grad_norm=recipe.max_grad_norm, train_sampling_strategy="group_by_length",
        seed=recipe.seed, use_cpu=not torch.cuda.is_available(), report_to="none", save_strategy="no",
        eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        logging_strategy="no",
    )
    clock = Clock()
    trainer = LengthTrainer(model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[clock])
    trainer.train()
    # Trainer 5.x length-groups evaluation too: predictions come back permuted, and label_ids with them.
    out = trainer.predict(evaluate)
    predictions = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return SideResult(clock.samples / clock.seconds, score(predictions, out.label_ids), clock.padding, clock.seconds,
                      clock.samples, clock.positions / clock.seconds)
