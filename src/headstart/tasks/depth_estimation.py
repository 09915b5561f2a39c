"""Monocular depth: hierarchical encoder -> GLPN decoder (Selective Feature Fusion) -> SILog.

The decoder is sized from the backbone's ``feature_channels``; when the backbone was loaded
from a GLPN depth checkpoint it also starts from that checkpoint's decoder + head weights.
The valid depth range and metric crop come from the data (``min_depth``, ``max_depth``,
``eval_crop``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.ops.depth_io import write_depth_png
from headstart.tasks.base import Task
from headstart.tasks.export import ExportError, HFExport, load_exact, say, with_prefix
from headstart.viz.depth import depth_panel, depth_png, write_depth_colour_png
from headstart.viz.figure import draw_each, file_stem
from headstart.viz.images import denormalize

UINT16_MAX = 65535


class DepthEstimationTask(Task):
    """Batches carry ``pixel_values`` [B, 3, H, W], ``depth`` [B, H, W] metres (0 = invalid, also
    in the padding) and ``sizes`` [B, 2] (each image's own h, w before padding).

    head: partial taking (feature_channels, max_depth[, hidden_size]) -> depth [B, H, W].
    loss: partial taking (min_depth, max_depth) -> module returning {"loss", "silog"}.
    metrics: partial taking (min_depth, max_depth, crop) -> DepthMetrics (val/abs_rel ... val/delta3).
    flip_test: average the prediction with that of the flipped image in val/test/predict.
    png_scale: 16-bit PNG units per metre in predict (None: millimetres, or 256 where
        max_depth does not fit 16-bit millimetres, as KITTI stores it).
    predict_dir: predict writes depth files to ``<predict_dir>/depth`` (None: the trainer root; predict.py sets its output dir).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: Callable[..., nn.Module],
        metrics: Callable[..., Metric],
        optimizer: Callable[..., torch.optim.Optimizer],
        max_depth: float,
        min_depth: float = 1e-3,
        eval_crop: Literal["garg", "eigen", "eigen_nyu"] | None = None,
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        flip_test: bool = False,
        png_scale: float | None = None,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.max_depth, self.min_depth = float(max_depth), float(min_depth)
        # A GLPN depth checkpoint's decoder + head (model.reuse_decoder) start the decoder.
        pretrained = backbone.decoder_weights() if hasattr(backbone, "decoder_weights") else None
        sizes = {"hidden_size": backbone.decoder_hidden_size} if hasattr(backbone, "decoder_hidden_size") else {}
        self.head = head(feature_channels=list(backbone.feature_channels), max_depth=self.max_depth, **sizes)
        if pretrained is not None:
            self.head.load_state_dict(pretrained, strict=True)
            self.kept_head = say(f"model.checkpoint={backbone.checkpoint}: kept its GLPNForDepthEstimation decoder and head")
        self.loss_fn = loss(min_depth=self.min_depth, max_depth=self.max_depth)
        self.val_metrics = MetricCollection({"depth": metrics(min_depth=self.min_depth, max_depth=self.max_depth, crop=eval_crop)},
                                            prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.flip_test = flip_test
        self.png_scale = png_scale or (1000.0 if self.max_depth * 1000.0 <= UINT16_MAX else 256.0)
        self.predict_dir = predict_dir

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, H, W] -> depth [B, H, W] metres in (0, max_depth)."""
        maps = self.backbone(pixel_values).feature_maps
        return self.head(maps, output_size=tuple(pixel_values.shape[-2:]))

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``GLPNForDepthEstimation``: the encoder, and this decoder and head under transformers'
        names (the inverse of ``backbones.glpn.glpn_decoder_state_dict``); ``max_depth`` in the
        config. The decoder upsamples to each next map's size where transformers doubles, so the
        two agree exactly on inputs whose sides are multiples of 32 (what the data pads to).
        ``task.flip_test`` is test-time averaging, not part of the model: the export has none."""
        from transformers import GLPNForDepthEstimation, GLPNImageProcessor

        from headstart.backbones.glpn import glpn_decoder_state_dict

        if type(self.head).__name__ != "DepthDecoder":
            raise ExportError(f"task=depth_estimation: the head is {type(self.head).__name__}, not GLPN's decoder; "
                              "this model cannot be exported exactly")
        if not float(self.head.max_depth).is_integer():  # GLPNConfig types max_depth as an int
            raise ExportError(f"task=depth_estimation: max_depth={self.head.max_depth} m; GLPNConfig holds whole metres only, "
                              "so this model cannot be exported exactly")
        if validate_only:
            return None
        config = copy.deepcopy(self.backbone.model.config)
        config.max_depth = int(self.head.max_depth)
        config.architectures = None
        model = GLPNForDepthEstimation(config)
        ours = self.head.state_dict()
        state = with_prefix("glpn", self.backbone.model.state_dict())
        for key in model.state_dict():
            if not key.startswith("glpn."):
                ((mine, _),) = glpn_decoder_state_dict({key: torch.empty(0)}).items()
                state[key] = ours[mine]
        load_exact(model, state, "GLPNForDepthEstimation")
        spec = self.backbone.data_spec()
        processor = GLPNImageProcessor(size_divisor=int(spec.get("size_multiple") or 32))
        return HFExport(model, [processor], "depth-estimation")

    def predict_depth(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Evaluation-time depth [B, H, W]: with ``flip_test``, the mean with the flipped image's (flipped back)."""
        depth = self(pixel_values)
        if self.flip_test:
            depth = 0.5 * (depth + self(pixel_values.flip(-1)).flip(-1))
        return depth

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["depth"].shape[0] == 0:  # every image of the batch was skipped as bad input
            return None
        terms = self.loss_fn(self(batch["pixel_values"]), batch["depth"])
        self.log_terms("train", terms, batch_size=batch["depth"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, torch.Tensor] | None:
        if batch["depth"].shape[0] == 0:
            return None
        depth = self.predict_depth(batch["pixel_values"])
        terms = self.loss_fn(depth, batch["depth"])
        self.log_terms(stage, terms, batch_size=batch["depth"].shape[0])
        metrics.update(depth, batch["depth"])
        return {"depth": depth.detach()}

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)

    def _log_metrics(self, metrics: MetricCollection) -> None:
        # DepthMetrics returns a dict (flattened by the collection to val/abs_rel, ...), which
        # Lightning cannot log as a Metric object: log the split's values (synced by compute).
        self.log_dict(metrics.compute(), on_step=False, on_epoch=True)
        metrics.reset()

    # ---- prediction ---------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per image: depth as 16-bit PNG (``png_scale`` units/m), .npy metres and a colourised PNG.

        Depth is cropped to the image's own size and resized (bilinear: the prediction is
        dense) to the input file's size. Records name the three files.
        """
        depth = self.predict_depth(batch["pixel_values"]).float()
        out_dir = Path(self.predict_dir or self.trainer.default_root_dir) / "depth"
        out_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for i, path in enumerate(batch["paths"]):
            h, w = (int(v) for v in batch["sizes"][i])
            one = depth[i : i + 1, :h, :w]
            orig_h, orig_w = batch["orig_sizes"][i]
            if (orig_h, orig_w) != (h, w):
                one = F.interpolate(one[None], size=(orig_h, orig_w), mode="bilinear", align_corners=False)[0]
            records.append(self._write_depth(one[0].cpu().numpy(), path, out_dir, f"{batch_idx:05d}_{i:03d}"))
        return records

    def _write_depth(self, depth: np.ndarray, path: str, out_dir: Path, index: str) -> dict[str, Any]:
        stem = f"{index}_{Path(path).stem}"
        files = {key: out_dir / f"{stem}{suffix}" for key, suffix in
                 (("depth_png", "_depth.png"), ("depth_npy", "_depth.npy"), ("depth_colour", "_depth_colour.png"))}
        write_depth_png(files["depth_png"], np.minimum(depth, UINT16_MAX / self.png_scale), scale=self.png_scale)
        np.save(files["depth_npy"], depth.astype(np.float32))
        write_depth_colour_png(files["depth_colour"], depth)
        return {
            "input": path,
            **{key: str(value) for key, value in files.items()},
            "png_scale": self.png_scale,
            "height": int(depth.shape[0]),
            "width": int(depth.shape[1]),
            "depth_min": round(float(depth.min()), 4),
            "depth_median": round(float(np.median(depth)), 4),
            "depth_max": round(float(depth.max()), 4),
        }

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per input: the image beside its depth map with a colour bar in metres."""

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            with Image.open(record["input"]) as image:
                return [depth_png(out / f"{file_stem(i, record['input'])}.png", image, np.load(record["depth_npy"]))]

        return draw_each(records, out_dir, draw)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, list[Any]]:
        """Panels image | true depth | predicted depth (one shared colour range) | relative error."""
        import wandb

        spec = self.backbone.data_spec()
        images = denormalize(batch["pixel_values"][:max_items], spec["image_mean"], spec["image_std"])
        panels = []
        for i, image in enumerate(images):
            h, w = (int(v) for v in batch["sizes"][i])
            pred, target = outputs["depth"][i, :h, :w], batch["depth"][i, :h, :w]
            caption = f"{Path(str(batch['paths'][i])).name}: image | true | predicted | abs rel error (0-0.5)"
            panels.append(wandb.Image(depth_panel(image[:h, :w], pred, target), caption=caption))
        return {"val/depth": panels}
