"""Summarization and translation (BART, T5, mBART, Marian): teacher-forced CE, generated-text metrics.

One task class serves both; they differ only by config (metrics, generation settings, the name
of the output field). Training is teacher forcing: the decoder reads the labels shifted right
and headstart's chunked CE scores its hidden states against the labels (-100 on padding,
optional label smoothing). Validation also generates with ``generate`` (beam search by
default) on the first ``generate_val_batches`` batches, decodes each batch at once and feeds
the strings to the metrics (ROUGE for summarization, sacreBLEU and chrF for translation), so
no more than one batch of generations is ever held. Test generates on every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, language_model, whole_model_kept


class Seq2SeqTask(Task):
    """Batches carry input_ids / attention_mask [B, S], labels [B, T] (-100 on padding), and the raw
    ``sources`` / ``targets`` strings (references come from the raw targets, not decoded ids).

    loss: ``LMLoss(shift=False)``. metrics: name -> Metric taking (predictions, references).
    generation: ``generate`` settings (num_beams, max_new_tokens, length_penalty...).
    generate_val_batches: validation batches to generate on each epoch (-1: all).
    output_key: the field of predict.py's records holding the output ("summary", "translation").
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        metrics: dict[str, Metric],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        generation: dict[str, Any] | None = None,
        generate_val_batches: int = 4,
        generate_test_batches: int = -1,
        output_key: str = "output",
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.loss_fn = loss
        self.kept_head = whole_model_kept(backbone)
        # no compute groups: metrics with equal states after the first batch (e.g. every ROUGE at 0
        # for an untrained model) would otherwise be merged into one for the whole run
        self.val_metrics = MetricCollection(dict(metrics), prefix="val/", compute_groups=False)
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.generation = dict(generation or {})
        if generate_val_batches == 0 or generate_val_batches < -1:
            raise ValueError(f"task.generate_val_batches={generate_val_batches}: use -1 (all) or at least 1, "
                             f"the monitored metric ({'/'.join(metrics)}) comes from generations")
        self.generate_batches = {"val": generate_val_batches, "test": generate_test_batches}
        self.output_key = output_key

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: decoder hidden states [B, T, D] for labels [B, T]."""
        return self.backbone(input_ids, attention_mask, labels)

    def _loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        hidden = self(batch["input_ids"], batch["attention_mask"], batch["labels"])
        weight, bias = self.backbone.lm_head()
        return self.loss_fn(hidden, weight, batch["labels"], bias)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._loss(batch)
        self.log_terms("train", {"loss": terms["loss"]}, batch_size=batch["input_ids"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, batch_idx, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str, metrics: MetricCollection) -> dict[str, Any]:
        terms = self._loss(batch)
        self.log_terms(stage, {"loss": terms["loss"]}, batch_size=batch["input_ids"].shape[0])
        limit = self.generate_batches[stage]
        if limit >= 0 and batch_idx >= limit:
            return {}
        predictions = self.generate_texts(batch["input_ids"], batch["attention_mask"])
        metrics.update(predictions, batch["targets"])
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"predictions": predictions}

    def generate_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        """Decoded outputs of one batch with the configured ``generation`` settings."""
        out = self.backbone.generate(input_ids, attention_mask, **self.generation)
        return [t.strip() for t in self.backbone.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """The ``*ForConditionalGeneration`` model itself with this task's generation settings."""
        tag = {"summary": "summarization", "translation": "translation"}.get(self.output_key, "text2text-generation")
        model = language_model(self.backbone, tag, self.generation, validate_only)
        return HFExport(model, [self.backbone.tokenizer], tag) if model is not None else None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input: {"input": source, <output_key>: generated text}."""
        outputs = self.generate_texts(batch["input_ids"], batch["attention_mask"])
        return [{"input": source, self.output_key: text} for source, text in zip(batch["texts"], outputs)]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """index.html with each input beside its output (summary, translation), and a PNG per input."""
        from headstart.viz.text_pages import pairs_page

        key = self.output_key
        return pairs_page(records, out_dir, key, [("input", lambda r: r["input"]), (key, lambda r: r[key])])

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A W&B table of validation sources, generated outputs and references."""
        import wandb

        predictions = (outputs or {}).get("predictions")
        if not predictions:
            return {}
        rows = [
            [self.current_epoch, source, prediction, target]
            for source, prediction, target in zip(batch["sources"], predictions, batch["targets"])
        ][:max_items]
        return {"val/generations": wandb.Table(columns=["epoch", "source", "generated", "reference"], data=rows)}
