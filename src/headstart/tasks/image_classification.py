"""Image classification: backbone -> pooled vector -> linear head -> cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.tasks.base import Task
from headstart.tasks.export import ExportError, HFExport, encoder_task_model, keep_checkpoint_head, require_layout, with_prefix
from headstart.viz.figure import draw_each, file_stem
from headstart.viz.images import classification_png, denormalize, labelled_image

# model_type -> the pooling (conf/model/*.yaml ``pooling``) its transformers classification class applies
EXPORT_POOLING = {"vit": "cls", "convnext": "pooler"}


class ImageClassificationTask(Task):
    """Batches carry ``pixel_values`` [B, 3, H, W] and ``labels`` [B] (class ids).

    head: partial taking (in_features, num_classes); sized from the backbone and label list.
    metrics: name -> partial taking ``num_classes``; a metric whose ``top_k`` exceeds the
    class count is left out (``acc_top5`` on fewer than 5 classes).
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
        num_classes = len(self.labels)
        if num_classes < 2:
            raise ValueError(f"image classification needs at least 2 classes, the data has {self.labels}")
        self.head = head(in_features=backbone.hidden_size, num_classes=num_classes)
        kind = getattr(getattr(backbone, "model", None), "config", None)
        kind, pooling = getattr(kind, "model_type", None), getattr(backbone, "pooling", None)
        fits = None if EXPORT_POOLING.get(kind) == pooling else f"model.pooling={pooling}, its class pools otherwise"
        self.kept_head = keep_checkpoint_head("image_classification", backbone, self.head, "ForImageClassification",
                                              {"proj.weight": "classifier.weight", "proj.bias": "classifier.bias"},
                                              self.labels, per_label=("proj.weight", "proj.bias"), fits=fits)
        self.loss_fn = loss
        kept = {
            name: factory(num_classes=num_classes)
            for name, factory in metrics.items()
            if getattr(factory, "keywords", {}).get("top_k", 1) <= num_classes
        }
        self.val_metrics = MetricCollection(kept, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.predict_top_k = min(predict_top_k, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, H, W] -> logits [B, C]."""
        return self.head(self.backbone(pixel_values).pooled)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``AutoModelForImageClassification`` (ViT: the [CLS] state after the final norm; ConvNeXT:
        the pooler's normed mean) and its image processor at this run's size, mean and std."""
        from transformers import AutoModelForImageClassification, ConvNextImageProcessor, ViTImageProcessor

        encoder = self.backbone.model
        kind, pooling = encoder.config.model_type, getattr(self.backbone, "pooling", None)
        target = f"AutoModelForImageClassification ({kind})"
        if EXPORT_POOLING.get(kind) != pooling:
            raise ExportError(
                f"task=image_classification: model.pooling={pooling} on {kind}; {target} pools with "
                f"{EXPORT_POOLING.get(kind, 'a rule headstart does not convert')}, so this model cannot be exported exactly"
            )
        require_layout(self.head, {"dropout": nn.Dropout, "proj": nn.Linear}, "image_classification", target)
        if validate_only:
            return None
        model = encoder_task_model(AutoModelForImageClassification, encoder,
                                   with_prefix("classifier", self.head.proj.state_dict()), self.labels, target)
        spec = self.backbone.data_spec()
        size, mean, std = int(spec["image_size"]), list(spec["image_mean"]), list(spec["image_std"])
        if kind == "convnext":  # resize the shorter side to size / crop_pct, centre crop (as headstart evaluates)
            crop = float(((self.meta.get("config") or {}).get("data") or {}).get("eval_crop_ratio") or 0.875)
            processor = ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=crop, image_mean=mean, image_std=std)
        else:
            processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=mean, image_std=std)
        return HFExport(model, [processor], "image-classification")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["labels"].numel() == 0:  # every image of the batch was skipped as bad input
            return None
        terms = self.loss_fn(self(batch["pixel_values"]), batch["labels"])
        self.log_terms("train", terms, batch_size=batch["labels"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, torch.Tensor] | None:
        if batch["labels"].numel() == 0:
            return None
        logits = self(batch["pixel_values"])
        terms = self.loss_fn(logits, batch["labels"])
        self.log_terms(stage, terms, batch_size=batch["labels"].shape[0])
        metrics.update(logits, batch["labels"])
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"logits": logits.detach()}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input: its path and the top-k labels with probabilities."""
        probs = self(batch["pixel_values"]).float().softmax(-1)
        scores, indices = probs.topk(self.predict_top_k, dim=-1)
        return [
            {
                "input": path,
                "labels": [self.labels[i] for i in idx.tolist()],
                "scores": [round(s, 6) for s in score.tolist()],
            }
            for path, score, idx in zip(batch["paths"], scores.cpu(), indices.cpu())
        ]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per input: the image beside a bar chart of its top-k classes."""

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            with Image.open(record["input"]) as image:
                return [classification_png(out / f"{file_stem(i, record['input'])}.png", image.convert("RGB"),
                                           record["labels"], record["scores"])]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        import wandb

        spec = self.backbone.data_spec()
        images = denormalize(batch["pixel_values"][:max_items], spec["image_mean"], spec["image_std"])
        preds = outputs["logits"][:max_items].argmax(-1).tolist()
        targets = batch["labels"][:max_items].tolist()
        panels = []
        for image, pred, target in zip(images, preds, targets):
            caption = f"pred: {self.labels[pred]} / true: {self.labels[target]}"
            panels.append(wandb.Image(labelled_image(image, caption), caption=caption))
        return {"val/examples": panels}
