"""Audio classification: waveform -> wav2vec2 frames -> masked mean pool -> linear -> cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.ops.padding import log_padding
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, keep_checkpoint_head, label_settings, require_layout, wav2vec2_model
from headstart.viz.audio import audio_classification_png, audio_players
from headstart.viz.figure import draw_each, file_stem


class AudioClassificationTask(Task):
    """Batches carry ``waveforms`` [B, T], ``lengths`` [B] valid samples and ``labels`` [B].

    head: partial taking (in_features, num_classes), called as head(hidden [B, F, D], mask [B, F]).
    metrics: name -> partial taking ``num_classes`` (val/acc, val/f1_macro).
    Prediction batches hold chunks of long files (``owners`` [N]): a file's class scores are
    the chunk probabilities averaged with weights proportional to chunk length.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: nn.Module,
        metrics: dict[str, Callable[..., Metric]],
        labels: list[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        predict_top_k: int = 5,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.labels = list(labels)
        if len(self.labels) < 2:
            raise ValueError(f"audio classification needs at least 2 classes, the data has {self.labels}")
        self.head = head(in_features=backbone.hidden_size, num_classes=len(self.labels))
        self.kept_head = keep_checkpoint_head("audio_classification", backbone, self.head, "ForSequenceClassification",
                                              {"proj.weight": "classifier.weight", "proj.bias": "classifier.bias"},
                                              self.labels, per_label=("proj.weight", "proj.bias"))
        self.loss_fn = loss
        self.val_metrics = MetricCollection({k: f(num_classes=len(self.labels)) for k, f in metrics.items()}, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.predict_top_k = min(predict_top_k, len(self.labels))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms [B, T], lengths [B] -> logits [B, C] (padding changes nothing)."""
        out = self.backbone(waveforms, lengths)
        return self.head(out.hidden_states, out.attention_mask)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``Wav2Vec2ForSequenceClassification``. Its head projects every frame (``projector``),
        takes the masked mean over valid frames, then classifies; headstart's takes the masked mean,
        then classifies. The projector is exported as the identity (``classifier_proj_size`` = the
        hidden size): the mean of identity-projected frames is the mean of the frames, so the class
        computes exactly this head."""
        from transformers import Wav2Vec2ForSequenceClassification

        target = "Wav2Vec2ForSequenceClassification"
        require_layout(self.head, {"dropout": nn.Dropout, "proj": nn.Linear}, "audio_classification", target)
        if validate_only:
            return None
        hidden = int(self.backbone.hidden_size)
        model, extractor = wav2vec2_model(self.backbone, Wav2Vec2ForSequenceClassification, **label_settings(self.labels),
                                          classifier_proj_size=hidden, use_weighted_layer_sum=False)
        with torch.no_grad():
            model.projector.weight.copy_(torch.eye(hidden))
            model.projector.bias.zero_()
            model.classifier.load_state_dict(self.head.proj.state_dict())
        return HFExport(model.eval(), [extractor], "audio-classification")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.backbone.update_freeze(self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["labels"].numel() == 0:  # every clip of the batch was skipped as bad input
            return None
        terms = self.loss_fn(self(batch["waveforms"], batch["lengths"]), batch["labels"])
        self.log_terms("train", terms, batch_size=batch["labels"].shape[0])
        log_padding(self, batch)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, torch.Tensor] | None:
        if batch["labels"].numel() == 0:
            return None
        logits = self(batch["waveforms"], batch["lengths"])
        self.log_terms(stage, self.loss_fn(logits, batch["labels"]), batch_size=batch["labels"].shape[0])
        metrics.update(logits, batch["labels"])
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"logits": logits.detach()}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per file: its path and the top-k labels with probabilities."""
        if not batch["paths"]:
            return []
        probs = self(batch["waveforms"], batch["lengths"]).float().softmax(-1)  # [N, C]
        weights = batch["lengths"].to(probs.dtype)[:, None]
        per_file = torch.zeros(len(batch["paths"]), probs.shape[1], device=probs.device)
        per_file.index_add_(0, batch["owners"], probs * weights)
        totals = torch.zeros(len(batch["paths"]), 1, device=probs.device).index_add_(0, batch["owners"], weights)
        scores, indices = (per_file / totals).topk(self.predict_top_k, dim=-1)
        return [
            {"input": path, "labels": [self.labels[i] for i in idx], "scores": [round(s, 6) for s in score]}
            for path, score, idx in zip(batch["paths"], scores.cpu().tolist(), indices.cpu().tolist())
        ]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per file: waveform and log-mel spectrogram above a bar chart of its top-k classes."""

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            png = out / f"{file_stem(i, record['input'])}.png"
            return [audio_classification_png(png, record["input"], record["labels"], record["scores"])]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        preds = outputs["logits"][:max_items].argmax(-1).tolist()
        targets = batch["labels"][:max_items].tolist()
        captions = [f"pred: {self.labels[p]} / true: {self.labels[t]}" for p, t in zip(preds, targets)]
        return {"val/examples": audio_players(batch["waveforms"], batch["lengths"], self.backbone.sample_rate, captions)}
