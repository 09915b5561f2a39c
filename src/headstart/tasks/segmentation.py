"""Segmentation, ``task.mode=semantic|instance|panoptic``, in two model families.

- ``MaskSegmentationTask`` (Mask2Former): per-layer query states -> class head; per-layer mask
  logits from the model; Hungarian mask loss; post-processing to semantic maps, scored instance
  masks or panoptic segments (``headstart.ops.seg_postprocess``).
- ``PixelSegmentationTask`` (SegFormer): multi-scale maps -> all-MLP decoder -> per-pixel logits;
  per-pixel CE with ignore_index; semantic only.

Which class runs is set by the model's config (conf/task/segmentation/<model>.yaml). Both share
``SegmentationTask``: metrics at the original image size, predict outputs (PNG + JSON), media.
Batches: see ``headstart.data.segmentation``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from PIL import Image
from torch import nn
from torchmetrics.detection import MeanAveragePrecision, PanopticQuality

from headstart.metrics.segmentation import SemanticIoU
from headstart.ops.seg_postprocess import instance_segmentation, panoptic_segmentation, semantic_segmentation
from headstart.ops.seg_targets import instance_ground_truth, mask_targets, panoptic_pairs
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, keep_checkpoint_head, label_config, load_exact, require_layout, with_prefix
from headstart.viz.figure import draw_each, file_stem
from headstart.viz.images import denormalize
from headstart.viz.masks import palette, segmentation_png, wandb_mask_image

Mode = Literal["semantic", "instance", "panoptic"]
STAGES = ("val", "test")


class SegmentationTask(Task):
    """What both families share. Subclasses define ``compute_loss``, ``semantic_logits`` and ``predict``."""

    modes: tuple[str, ...] = ("semantic", "instance", "panoptic")

    def __init__(
        self,
        backbone: nn.Module,
        labels: list[str],
        thing_classes: list[int],
        ignore_index: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        mode: Mode = "semantic",
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        if mode not in self.modes:
            raise ValueError(
                f"task.mode={mode}: {type(self).__name__} serves {', '.join(self.modes)} (instance and panoptic need model=mask2former)"
            )
        self.labels, self.mode, self.ignore_index = list(labels), mode, ignore_index
        self.num_classes = len(self.labels)
        if self.num_classes < 1:
            raise ValueError("segmentation needs at least one class")
        self.register_buffer("things", torch.tensor(sorted(thing_classes), dtype=torch.long), persistent=False)
        stuffs = sorted(set(range(self.num_classes)) - set(thing_classes))
        if mode == "instance" and not thing_classes:
            raise ValueError("task.mode=instance needs thing classes; this data has only stuff (semantic masks)")
        self.metrics = nn.ModuleDict()
        for stage in STAGES:
            self.metrics[f"{stage}_semantic"] = SemanticIoU(self.num_classes, ignore_index)
            if mode == "instance":
                self.metrics[f"{stage}_instance"] = MeanAveragePrecision(iou_type="segm", backend="faster_coco_eval")
            if mode == "panoptic":
                self.metrics[f"{stage}_panoptic"] = PanopticQuality(
                    things=set(thing_classes), stuffs=set(stuffs), allow_unknown_preds_category=True, return_sq_and_rq=True
                )

    # ---- family-specific parts ------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
        raise NotImplementedError

    def semantic_maps(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Class id per pixel at each size: B tensors [H_b, W_b]."""
        raise NotImplementedError

    def mode_predictions(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[Any]:
        """Instance (masks/scores/labels dicts) or panoptic (segmentation/segments_info dicts) results."""
        raise NotImplementedError

    # ---- steps --------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["pixel_values"].shape[0] == 0:  # every image of the batch was skipped as bad input
            return None
        terms, _ = self.compute_loss(batch)
        self.log_terms("train", terms, batch_size=batch["pixel_values"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Any] | None:
        if batch["pixel_values"].shape[0] == 0:
            return None
        terms, outputs = self.compute_loss(batch)
        self.log_terms(stage, terms, batch_size=batch["pixel_values"].shape[0])
        sizes = batch["target_sizes"]
        gt_ids = batch["orig_seg_ids"]
        for pred, ids, labels in zip(self.semantic_maps(outputs, sizes), gt_ids, batch["segment_labels"]):
            lut = torch.cat([labels.new_tensor([self.ignore_index]), labels]).to(ids.device)
            self.metrics[f"{stage}_semantic"].update(pred, lut[ids])
        if self.mode != "semantic":
            self._update_mode_metric(stage, self.mode_predictions(outputs, sizes), batch)
        size = tuple(batch["pixel_values"].shape[-2:])
        with torch.no_grad():
            maps = self.semantic_maps(_first(outputs, 8), [size] * min(8, len(sizes)))
        return {"pred_maps": torch.stack(maps).detach()}

    def _update_mode_metric(self, stage: str, predictions: list[Any], batch: dict[str, Any]) -> None:
        for pred, ids, labels, crowd in zip(predictions, batch["orig_seg_ids"], batch["segment_labels"], batch["segment_crowd"]):
            if self.mode == "instance":
                target = instance_ground_truth(ids, labels, crowd, self.things)
                self.metrics[f"{stage}_instance"].update([pred], [target])
            else:
                seg_labels = torch.tensor([s["label_id"] for s in pred["segments_info"]], dtype=torch.long)
                preds = panoptic_pairs(pred["segmentation"].long(), seg_labels, self.num_classes)
                target = panoptic_pairs(ids, labels, self.num_classes)
                self.metrics[f"{stage}_panoptic"].update(preds[None], target[None])

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        semantic = self.metrics[f"{stage}_semantic"]
        scores = semantic.compute()
        self.log(f"{stage}/miou", scores["miou"])
        self.log(f"{stage}/pixel_acc", scores["pixel_acc"])
        self._per_class_to_summary(stage, scores["iou_per_class"])
        semantic.reset()
        if self.mode == "instance":
            metric = self.metrics[f"{stage}_instance"]
            result = metric.compute()
            for name, key in (("map_mask", "map"), ("map_mask_50", "map_50"), ("map_mask_75", "map_75")):
                self.log(f"{stage}/{name}", result[key].float())
            metric.reset()
        elif self.mode == "panoptic":
            metric = self.metrics[f"{stage}_panoptic"]
            # torchmetrics gives NaN when nothing was predicted; that is a PQ of 0.
            pq, sq, rq = torch.nan_to_num(metric.compute().float().flatten()[:3], nan=0.0)
            self.log(f"{stage}/pq", pq)
            self.log(f"{stage}/sq", sq)
            self.log(f"{stage}/rq", rq)
            metric.reset()

    def _per_class_to_summary(self, stage: str, iou: torch.Tensor) -> None:
        """Per-class IoU goes to the W&B run summary (one number per class; too many for charts)."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        values = iou.tolist()
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                for name, value in zip(self.labels, values):
                    logger.experiment.summary[f"{stage}/iou/{name}"] = None if value != value else value

    # ---- predict ---------------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input; its mask PNG goes to <run dir>/masks/."""
        out_dir = Path(self.trainer.default_root_dir) / "masks"
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs = self.predict_outputs(batch["pixel_values"])
        sizes = batch["target_sizes"]
        if self.mode == "semantic":
            results = [{"semantic": m} for m in self.semantic_maps(outputs, sizes)]
        else:
            results = self.mode_predictions(outputs, sizes)
        records = []
        for i, (path, result) in enumerate(zip(batch["paths"], results)):
            png = out_dir / f"{batch_idx:04d}_{i:03d}_{Path(path).stem}.png"
            records.append({"input": path, "mode": self.mode, **self._write_result(result, png)})
        return records

    def predict_outputs(self, pixel_values: torch.Tensor) -> Any:
        raise NotImplementedError

    def _write_result(self, result: dict[str, Any], png: Path) -> dict[str, Any]:
        if self.mode == "semantic":
            index = result["semantic"].cpu().numpy()
            _save_index_png(index, png)
            present = np.bincount(index.ravel(), minlength=self.num_classes)
            return {"mask": str(png), "classes": {self.labels[c]: round(int(n) / index.size, 6) for c, n in enumerate(present) if n}}
        if self.mode == "panoptic":
            _save_index_png(result["segmentation"].cpu().numpy(), png)
            segments = [
                {
                    "id": s["id"],
                    "label": self.labels[s["label_id"]],
                    "label_id": s["label_id"],
                    "score": s["score"],
                    "isthing": s["label_id"] in self.things.tolist(),
                }
                for s in result["segments_info"]
            ]
            return {"mask": str(png), "segments": segments}
        keep = result["scores"] >= self.instance_score_threshold
        masks, scores, labels = result["masks"][keep].cpu(), result["scores"][keep].tolist(), result["labels"][keep].tolist()
        index = np.zeros(masks.shape[-2:], dtype=np.int32)
        for k in reversed(range(len(scores))):  # best last, so it stays on top
            index[masks[k].numpy()] = k + 1
        _save_index_png(index, png)
        segments = [
            {"id": k + 1, "label": self.labels[c], "label_id": c, "score": round(s, 6), "area": int(masks[k].sum())}
            for k, (c, s) in enumerate(zip(labels, scores))
        ]
        return {"mask": str(png), "segments": segments}

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per input: the image beside its class overlay, with a legend of the classes present."""
        colours = palette(self.num_classes)
        threshold = {"instance": "instance_score_threshold", "panoptic": "panoptic_score_threshold"}.get(self.mode)
        empty = f"nothing found above threshold {getattr(self, threshold):g}" if threshold else "no classes predicted"

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            with Image.open(record["mask"]) as mask:
                index = np.asarray(mask).astype(np.int64)
            if record["mode"] == "semantic":
                classes, ids = index, {self.labels.index(name): f"{name} ({share:.0%})" for name, share in record["classes"].items()}
            else:  # segment id -> its class colour
                lut = np.full(max([index.max(), *(s["id"] for s in record["segments"])]) + 1, -1, dtype=np.int64)
                for s in record["segments"]:
                    lut[s["id"]] = s["label_id"]
                classes, ids = lut[index], {s["label_id"]: s["label"] for s in record["segments"]}
            with Image.open(record["input"]) as image:
                return [segmentation_png(out / f"{file_stem(i, record['input'])}.png", image, classes, colours, sorted(ids.items()), empty)]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        spec = self.backbone.data_spec()
        images = denormalize(batch["pixel_values"][:max_items], spec["image_mean"], spec["image_std"])
        preds = outputs["pred_maps"][:max_items].cpu().numpy()
        targets = batch["semantic"][:max_items].cpu().numpy()
        targets = np.where(targets == self.ignore_index, self.num_classes, targets)
        return {
            "val/segmentation": [
                wandb_mask_image(image, pred, target, self.labels, Path(str(path)).name)
                for image, pred, target, path in zip(images, preds, targets, batch["paths"])
            ]
        }


class MaskSegmentationTask(SegmentationTask):
    """Mask2Former: class head on every decoder layer's queries + the model's per-layer mask logits.

    head: partial taking (in_features, num_classes) -> class logits [.., C+1].
    loss: partial taking num_classes -> MaskCriterion (Hungarian matching, CE + point BCE + dice, aux).
    Post-processing: panoptic_score_threshold / overlap_threshold / mask_threshold (panoptic; stuff
    classes are fused), instance_top_k (instance), instance_score_threshold (predict outputs only).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: Callable[..., nn.Module],
        labels: list[str],
        thing_classes: list[int],
        ignore_index: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        mode: Mode = "semantic",
        panoptic_score_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        mask_threshold: float = 0.5,
        instance_top_k: int = 100,
        instance_score_threshold: float = 0.5,
    ) -> None:
        super().__init__(backbone, labels, thing_classes, ignore_index, optimizer, scheduler, backbone_lr, lr_interval, mode)
        self.head = head(in_features=backbone.hidden_size, num_classes=self.num_classes)
        self.kept_head = keep_checkpoint_head("segmentation", backbone, self.head, "ForUniversalSegmentation",
                                              {"proj.weight": "class_predictor.weight", "proj.bias": "class_predictor.bias"},
                                              self.labels, per_label=("proj.weight", "proj.bias"), extra_rows=1)
        self.loss_fn = loss(num_classes=self.num_classes)
        self.panoptic_score_threshold = panoptic_score_threshold
        self.overlap_threshold = overlap_threshold
        self.mask_threshold = mask_threshold
        self.instance_top_k = instance_top_k
        self.instance_score_threshold = instance_score_threshold
        self.stuff_classes = sorted(set(range(self.num_classes)) - set(thing_classes))

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> class_logits [L, B, Q, C+1], mask_logits [L, B, Q, H/4, W/4] (last = final layer)."""
        out = self.backbone(pixel_values)
        return {"class_logits": self.head(out.query_states), "mask_logits": out.mask_logits}

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``Mask2FormerForUniversalSegmentation``: the model (its mask predictor gives the masks)
        and ``class_predictor``, this head's one linear layer over num_classes + no-object."""
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        target = "Mask2FormerForUniversalSegmentation"
        require_layout(self.head, {"proj": nn.Linear}, "segmentation", target)
        if validate_only:
            return None
        model = Mask2FormerForUniversalSegmentation(label_config(self.backbone.model.config, self.labels))
        state = {**with_prefix("model", self.backbone.model.state_dict()), **with_prefix("class_predictor", self.head.proj.state_dict())}
        load_exact(model, state, target, from_config=("criterion.",))
        return HFExport(model, [segmentation_processor(Mask2FormerImageProcessor, self.backbone.data_spec(), self.ignore_index)],
                        "image-segmentation")

    def compute_loss(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
        outputs = self(batch["pixel_values"])
        targets = [
            mask_targets(ids, labels, crowd, self.mode, self.things)
            for ids, labels, crowd in zip(batch["seg_ids"], batch["segment_labels"], batch["segment_crowd"])
        ]
        terms = self.loss_fn(outputs["class_logits"], outputs["mask_logits"], targets)
        return terms, {"class_logits": outputs["class_logits"][-1], "mask_logits": outputs["mask_logits"][-1]}

    def predict_outputs(self, pixel_values: torch.Tensor) -> Any:
        outputs = self(pixel_values)
        return {"class_logits": outputs["class_logits"][-1], "mask_logits": outputs["mask_logits"][-1]}

    def semantic_maps(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        return semantic_segmentation(outputs["class_logits"], outputs["mask_logits"], sizes)

    def mode_predictions(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[Any]:
        if self.mode == "instance":
            return instance_segmentation(
                outputs["class_logits"], outputs["mask_logits"], sizes, self.instance_top_k, mask_threshold=self.mask_threshold
            )
        return panoptic_segmentation(
            outputs["class_logits"],
            outputs["mask_logits"],
            sizes,
            self.panoptic_score_threshold,
            self.overlap_threshold,
            self.mask_threshold,
            label_ids_to_fuse=self.stuff_classes,
        )


class PixelSegmentationTask(SegmentationTask):
    """SegFormer: multi-scale feature maps -> decoder head -> per-pixel logits [B, C, H/4, W/4]; semantic only.

    head: partial taking (feature_channels, decoder_hidden_size, num_classes).
    loss: partial taking ignore_index -> per-pixel CE (logits upsampled to the label size).
    """

    modes = ("semantic",)

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: Callable[..., nn.Module],
        labels: list[str],
        thing_classes: list[int],
        ignore_index: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        mode: Mode = "semantic",
    ) -> None:
        super().__init__(backbone, labels, thing_classes, ignore_index, optimizer, scheduler, backbone_lr, lr_interval, mode)
        self.head = head(
            feature_channels=backbone.feature_channels, decoder_hidden_size=backbone.decoder_hidden_size, num_classes=self.num_classes
        )
        names = {key: f"decode_head.{key}" for key in self.head.state_dict()}
        self.kept_head = keep_checkpoint_head("segmentation", backbone, self.head, "ForSemanticSegmentation", names,
                                              self.labels, per_label=("classifier.weight", "classifier.bias"))
        self.loss_fn = loss(ignore_index=ignore_index)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, H, W] -> logits [B, C, H/4, W/4]."""
        return self.head(self.backbone(pixel_values).feature_maps)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``SegformerForSemanticSegmentation``: the encoder and the all-MLP decode head (this head's
        layers, under the same names), logits at 1/4 of the input."""
        from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

        target = "SegformerForSemanticSegmentation"
        layout = {"linear_projections": nn.ModuleList, "linear_fuse": nn.Conv2d, "batch_norm": nn.BatchNorm2d,
                  "activation": nn.ReLU, "dropout": nn.Dropout, "classifier": nn.Conv2d}
        require_layout(self.head, layout, "segmentation", target)
        if validate_only:
            return None
        model = SegformerForSemanticSegmentation(label_config(self.backbone.model.config, self.labels))
        state = {**with_prefix("segformer", self.backbone.model.state_dict()), **with_prefix("decode_head", self.head.state_dict())}
        load_exact(model, state, target)
        return HFExport(model, [segmentation_processor(SegformerImageProcessor, self.backbone.data_spec(), self.ignore_index)],
                        "image-segmentation")

    def compute_loss(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
        logits = self(batch["pixel_values"])
        return self.loss_fn(logits, batch["semantic"]), logits

    def predict_outputs(self, pixel_values: torch.Tensor) -> Any:
        return self(pixel_values)

    def semantic_maps(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        return [
            F.interpolate(outputs[b : b + 1].float(), size=size, mode="bilinear", align_corners=False)[0].argmax(0)
            for b, size in enumerate(sizes)
        ]


def segmentation_processor(kind: Any, spec: dict[str, Any], ignore_index: int) -> Any:
    """The image processor of a segmentation export: this run's size (square), mean and std; labels
    kept as they are (no reduce_labels), ``ignore_index`` as headstart's."""
    size = int(spec["image_size"])
    return kind(size={"height": size, "width": size}, image_mean=list(spec["image_mean"]), image_std=list(spec["image_std"]),
                do_reduce_labels=False, ignore_index=ignore_index)


def _first(outputs: Any, n: int) -> Any:
    """The first n images of a batch's outputs (a tensor or a dict of tensors)."""
    if isinstance(outputs, dict):
        return {key: value[:n] for key, value in outputs.items()}
    return outputs[:n]


def _save_index_png(index: np.ndarray, path: Path) -> None:
    """Class or segment ids as a PNG: 8-bit when they fit, 16-bit otherwise."""
    if index.max(initial=0) < 256:
        Image.fromarray(index.astype(np.uint8), mode="L").save(path)
    else:
        Image.fromarray(index.astype(np.uint16)).save(path)
