"""Object detection (DETR): backbone -> per-layer query states -> shared class/box head -> Hungarian set loss.

Every decoder layer is scored by the same head; the set criterion matches each layer's
predictions to the targets and sums the same terms over the layers (auxiliary losses).
Validation post-processes the last layer into pixel boxes of the original images and scores
them with torchmetrics' ``MeanAveragePrecision`` (COCO protocol, faster-coco-eval backend).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image
from torch import nn
from torchmetrics import Metric

from headstart.ops.boxes import cxcywh_to_xyxy
from headstart.ops.detection_postprocess import post_process_detections
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, label_config, load_exact, require_layout, say, with_prefix
from headstart.viz.boxes import detection_png, wandb_boxes
from headstart.viz.figure import draw_each, file_stem
from headstart.viz.images import denormalize

# MeanAveragePrecision results logged as <stage>/<name> (the DESIGN table's val/map, map_50, map_75 first).
LOGGED = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")


class ObjectDetectionTask(Task):
    """Batches carry ``pixel_values`` [B, 3, H, W], ``pixel_mask`` [B, H, W], ``targets`` (B dicts of
    "class_labels" [N] and "boxes" [N, 4] normalised cxcywh), ``orig_sizes`` [B, 2] and ``paths``.

    head: partial taking (in_features, num_classes) -> module mapping [L, B, Q, D] to
        (logits [L, B, Q, C+1], boxes [L, B, Q, 4]).
    loss: partial taking ``num_classes`` -> set criterion (named terms + "loss").
    metrics: partial making a ``MeanAveragePrecision`` (xyxy boxes, class_metrics for per-class AP).
    reuse_head: start the head from a detection checkpoint's head (``backbone.head_weights``).
    eval_threshold / eval_top_k: detections scored by mAP (COCO practice: every query, no threshold).
    predict_threshold / predict_top_k: detections written by predict.py and drawn in media.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: Callable[..., nn.Module],
        metrics: Callable[..., Metric],
        labels: list[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        reuse_head: bool = True,
        eval_threshold: float = 0.0,
        eval_top_k: int | None = None,
        predict_threshold: float = 0.5,
        predict_top_k: int | None = 100,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.labels = list(labels)
        if not self.labels:
            raise ValueError("object detection needs at least 1 class; the data has none")
        num_classes = len(self.labels)
        self.head = head(in_features=backbone.hidden_size, num_classes=num_classes)
        pretrained = backbone.head_weights(self.labels) if reuse_head and hasattr(backbone, "head_weights") else None
        if pretrained:
            self.head.load_state_dict(pretrained, strict=False)  # the class layer only when the classes match
            kept = "class layer and box MLP (labels matched by name)" if "class_head.weight" in pretrained else (
                "box MLP; the class layer was re-initialised: its labels are not the data's")
            self.kept_head = say(f"model.checkpoint={backbone.checkpoint}: kept its DetrForObjectDetection {kept}")
        self.loss_fn = loss(num_classes=num_classes)
        self.val_metrics, self.test_metrics = metrics(), metrics()
        self.eval_threshold, self.eval_top_k = eval_threshold, eval_top_k
        self.predict_threshold, self.predict_top_k = predict_threshold, predict_top_k

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [B, 3, H, W], pixel_mask [B, H, W] -> (logits [L, B, Q, C+1], boxes [L, B, Q, 4] cxcywh)."""
        return self.head(self.backbone(pixel_values, pixel_mask).query_states)

    def set_loss(self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The last layer's terms plus every earlier layer's (``loss_ce_0`` ...)."""
        return self.loss_fn(logits[-1], boxes[-1], targets, aux_outputs=list(zip(logits[:-1], boxes[:-1])))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch["targets"]:  # every image of the batch was skipped as bad input
            return None
        logits, boxes = self(batch["pixel_values"], batch["pixel_mask"])
        terms = self.set_loss(logits, boxes, batch["targets"])
        self.log_terms("train", terms, batch_size=len(batch["targets"]))
        self._log_dropped("train", batch)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: Metric) -> dict[str, torch.Tensor] | None:
        if not batch["targets"]:
            return None
        logits, boxes = self(batch["pixel_values"], batch["pixel_mask"])
        self.log_terms(stage, self.set_loss(logits, boxes, batch["targets"]), batch_size=len(batch["targets"]))
        self._log_dropped(stage, batch)
        preds = post_process_detections(logits[-1].float(), boxes[-1].float(), batch["orig_sizes"],
                                        threshold=self.eval_threshold, top_k=self.eval_top_k)
        metric.update(preds, pixel_targets(batch["targets"], batch["orig_sizes"]))
        return {"logits": logits[-1].detach(), "boxes": boxes[-1].detach()}

    def _log_dropped(self, stage: str, batch: dict[str, Any]) -> None:
        """Degenerate / out-of-image boxes the data dropped, summed over the epoch."""
        if "boxes_dropped" in batch:
            self.log(f"{stage}/boxes_dropped", batch["boxes_dropped"].float(), on_step=False, on_epoch=True,
                     reduce_fx="sum", batch_size=len(batch["targets"]), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, stage: str, metric: Metric) -> None:
        """Headline mAPs as ``<stage>/map...``; per-class AP into the W&B run summary."""
        results = metric.compute()
        metric.reset()
        self.log_dict({f"{stage}/{name}": results[name].float() for name in LOGGED if name in results}, on_step=False, on_epoch=True)
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        per_class = per_class_ap(results, self.labels)
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and per_class:
                logger.experiment.summary.update({f"{stage}/ap/{name}": ap for name, ap in per_class.items()})

    # ---- optimisation -------------------------------------------------------------------------
    # ---- prediction ---------------------------------------------------------------------------
    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``DetrForObjectDetection``: the DETR model, the class layer (+ no-object) and the 3-layer
        box MLP on the last decoder layer's states (this head, under transformers' names), and a
        ``DetrImageProcessor`` at this run's sizes, mean and std."""
        from transformers import DetrForObjectDetection, DetrImageProcessor

        from headstart.backbones.detr import HEAD_KEYS

        target = "DetrForObjectDetection"
        require_layout(self.head, {"class_head": nn.Linear, "box_mlp": nn.Sequential}, "object_detection", target)
        if validate_only:
            return None
        # auxiliary_loss stays on: in transformers 5 it also norms every decoder layer's output
        config = label_config(self.backbone.model.config, self.labels)
        model = DetrForObjectDetection(config)
        head = self.head.state_dict()
        state = {**with_prefix("model", self.backbone.model.state_dict()), **{theirs: head[ours] for ours, theirs in HEAD_KEYS.items()}}
        load_exact(model, state, target)
        spec = self.backbone.data_spec()
        processor = DetrImageProcessor(size={"shortest_edge": int(spec["image_size"]), "longest_edge": int(spec["max_size"])},
                                       image_mean=list(spec["image_mean"]), image_std=list(spec["image_std"]))
        return HFExport(model, [processor], "object-detection")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per image: boxes (xyxy pixels of the input file), class names and scores, best first."""
        logits, boxes = self(batch["pixel_values"], batch["pixel_mask"])
        detections = post_process_detections(logits[-1].float(), boxes[-1].float(), batch["orig_sizes"],
                                              threshold=self.predict_threshold, top_k=self.predict_top_k)
        records = []
        for path, size, found in zip(batch["paths"], batch["orig_sizes"].tolist(), detections):
            height, width = size
            xyxy = found["boxes"].cpu()
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
            records.append({
                "input": path,
                "boxes": [[round(v, 2) for v in box] for box in xyxy.tolist()],
                "labels": [self.labels[i] for i in found["labels"].tolist()],
                "scores": [round(s, 6) for s in found["scores"].tolist()],
            })
        return records

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per input with its boxes, class names and scores ("nothing detected" when none)."""
        index = {name: i for i, name in enumerate(self.labels)}

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            with Image.open(record["input"]) as image:
                return [detection_png(out / f"{file_stem(i, record['input'])}.png", image.convert("RGB"), record["boxes"],
                                      record["labels"], [index.get(name, 0) for name in record["labels"]],
                                      record["scores"], self.predict_threshold)]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        """Validation images with predicted (score > predict_threshold) and true boxes."""
        import wandb

        spec = self.backbone.data_spec()
        n = min(max_items, len(batch["targets"]))
        images = denormalize(batch["pixel_values"][:n], spec["image_mean"], spec["image_std"])
        found = post_process_detections(outputs["logits"][:n].float(), outputs["boxes"][:n].float(),
                                        threshold=self.predict_threshold, top_k=self.predict_top_k)
        names = dict(enumerate(self.labels))
        panels = []
        for image, (h, w), pred, target in zip(images, batch["sizes"][:n].tolist(), found, batch["targets"][:n]):
            true_boxes = cxcywh_to_xyxy(target["boxes"]).clamp(0, 1).tolist()
            panels.append(wandb.Image(image[:h, :w], boxes={
                "predictions": wandb_boxes(pred["boxes"].clamp(0, 1).tolist(), pred["labels"].tolist(), names,
                                           pred["scores"].tolist()),
                "ground_truth": wandb_boxes(true_boxes, target["class_labels"].tolist(), names),
            }))
        return {"val/detections": panels}


def pixel_targets(targets: list[dict[str, torch.Tensor]], sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Normalised cxcywh targets -> {"boxes" xyxy pixels of (h, w) = sizes[b], "labels"} for mAP."""
    out = []
    for target, (height, width) in zip(targets, sizes.to(torch.float32)):
        scale = torch.stack([width, height, width, height]).to(target["boxes"].device)
        out.append({"boxes": cxcywh_to_xyxy(target["boxes"].float()) * scale, "labels": target["class_labels"]})
    return out


def per_class_ap(results: dict[str, torch.Tensor], labels: list[str]) -> dict[str, float]:
    """{class name: AP@[.5:.95]} from MeanAveragePrecision(class_metrics=True) results; classes
    without ground truth (AP -1) are left out."""
    if "map_per_class" not in results or "classes" not in results:
        return {}
    aps, classes = results["map_per_class"].reshape(-1).tolist(), results["classes"].reshape(-1).tolist()
    return {labels[int(c)]: float(ap) for c, ap in zip(classes, aps) if ap >= 0 and 0 <= int(c) < len(labels)}
