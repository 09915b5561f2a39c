"""GLPN's hierarchical (Mix Transformer) encoder from transformers, for dense depth heads.

The encoder returns four maps at strides 4, 8, 16 and 32 (finest first), declared as
``feature_channels`` / ``feature_strides`` so the task sizes its decoder from them.
When the checkpoint is a ``GLPNForDepthEstimation`` depth model (``vinvino02/glpn-nyu``,
``vinvino02/glpn-kitti``), its decoder and head weights are kept too, mapped to
headstart's :class:`~headstart.heads.depth_decoder.DepthDecoder` keys
(:meth:`GLPNEncoder.decoder_weights`), so the task's decoder starts from them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import AutoImageProcessor, GLPNForDepthEstimation, GLPNModel

from headstart.backbones.base import EncoderOutput, load_or_explain
from headstart.backbones.contract import DataSpec
from headstart.backbones.hf_vision import build_hf_config

# GLPN's image processor only rescales to [0, 1]: no mean/std normalisation.
GLPN_MEAN = (0.0, 0.0, 0.0)
GLPN_STD = (1.0, 1.0, 1.0)


class GLPNEncoder(nn.Module):
    """transformers' ``GLPNModel`` as a headstart backbone.

    forward(pixel_values [B, 3, H, W]) -> EncoderOutput with
        feature_maps: 4 maps [B, C_i, ceil(H / s_i), ceil(W / s_i)], finest first
            (C_i = ``feature_channels``, s_i = ``feature_strides`` = 4, 8, 16, 32);
        hidden_states: the 1/32 map as tokens [B, L, C_3]; pooled: their mean [B, C_3].

    Args:
        checkpoint: hub id or local directory of a GLPN checkpoint (an encoder-only
            ``GLPNModel`` or a ``GLPNForDepthEstimation``).
        preset / presets: a named small config (random init, offline), e.g. ``tiny``.
        pretrained: load the checkpoint's weights (False: its architecture, random init).
        config: HF config overrides; with ``model_type`` the config is built offline.
        reuse_decoder: keep a depth checkpoint's decoder + head weights for the task.
        size_multiple: input sizes the encoder handles without rounding (its total stride).
    """

    def __init__(
        self,
        checkpoint: str = "vinvino02/glpn-nyu",
        preset: str | None = None,
        presets: dict[str, dict] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        reuse_decoder: bool = True,
        gradient_checkpointing: bool = False,
        freeze: bool = False,
        size_multiple: int = 32,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        hf_config, load_weights = build_hf_config(checkpoint, preset, dict(presets or {}), dict(config or {}), pretrained)
        load_weights = load_weights and pretrained
        self._decoder_weights: dict[str, torch.Tensor] | None = None
        if load_weights:
            self.model = self._load(hf_config, reuse_decoder)
        else:
            self.model = GLPNModel(hf_config)
        hf_config = self.model.config
        self.feature_channels = [int(c) for c in hf_config.hidden_sizes]
        self.feature_strides = [int(s) for s in _cumulative(hf_config.strides)]
        self.hidden_size = self.feature_channels[-1]
        # What a depth decoder reusing this checkpoint's weights must look like.
        self.decoder_hidden_size = int(hf_config.decoder_hidden_size)
        self._spec = self._data_spec(load_weights, size_multiple, image_mean, image_std)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if freeze:
            self.model.requires_grad_(False)

    def _load(self, hf_config: Any, reuse_decoder: bool) -> GLPNModel:
        """The encoder of ``checkpoint``; a depth checkpoint's decoder weights are kept aside."""
        is_depth_model = "GLPNForDepthEstimation" in (getattr(hf_config, "architectures", None) or [])
        if not is_depth_model:
            return load_or_explain(lambda: GLPNModel.from_pretrained(self.checkpoint, config=hf_config), self.checkpoint)
        full = load_or_explain(
            lambda: GLPNForDepthEstimation.from_pretrained(self.checkpoint, config=hf_config), self.checkpoint
        )
        if reuse_decoder:
            self._decoder_weights = {k: v.detach().clone() for k, v in glpn_decoder_state_dict(full.state_dict()).items()}
        return full.glpn

    def _data_spec(
        self,
        from_checkpoint: bool,
        size_multiple: int,
        image_mean: tuple[float, ...] | None,
        image_std: tuple[float, ...] | None,
    ) -> dict[str, Any]:
        mean, std, multiple = GLPN_MEAN, GLPN_STD, size_multiple
        if from_checkpoint:
            try:  # a local dir may hold weights without a preprocessor config: keep the defaults then
                proc = AutoImageProcessor.from_pretrained(self.checkpoint)
                if getattr(proc, "do_normalize", False):
                    mean, std = tuple(proc.image_mean), tuple(proc.image_std)
                multiple = int(getattr(proc, "size_divisor", None) or multiple)
            except (OSError, ValueError):
                pass
        return {
            "image_mean": tuple(float(m) for m in (image_mean or mean)),
            "image_std": tuple(float(s) for s in (image_std or std)),
            "size_multiple": int(multiple),
        }

    def data_spec(self) -> DataSpec:
        """What the data pipeline needs: image_mean, image_std, size_multiple (pad batches to it)."""
        return dict(self._spec)

    def decoder_weights(self) -> dict[str, torch.Tensor] | None:
        """The checkpoint's decoder + head weights as DepthDecoder keys (None: not a depth checkpoint)."""
        return self._decoder_weights

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this architecture offline (weights come from a checkpoint)."""
        return {
            "preset": None,
            "pretrained": False,
            "config": self.model.config.to_dict(),
            "image_mean": list(self._spec["image_mean"]),
            "image_std": list(self._spec["image_std"]),
            "size_multiple": self._spec["size_multiple"],
        }

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        maps = list(out.hidden_states)
        tokens = maps[-1].flatten(2).transpose(1, 2)
        return EncoderOutput(hidden_states=tokens, pooled=tokens.mean(dim=1), feature_maps=maps)


def _cumulative(strides: Any) -> list[int]:
    """Per-stage strides (4, 2, 2, 2) -> strides from the input (4, 8, 16, 32)."""
    return [math.prod(strides[: i + 1]) for i in range(len(strides))]


# transformers key (after "decoder." / "head.") -> DepthDecoder key
_GLPN_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^decoder\.stages\.(\d+)\.convolution\.(.+)$", "projections.{0}.{1}"),
    (r"^decoder\.stages\.(\d+)\.fusion\.convolutional_layer1\.(.+)$", "fusions.{prev}.reduce.{1}"),
    (r"^decoder\.stages\.(\d+)\.fusion\.convolutional_layer2\.(.+)$", "fusions.{prev}.refine.{1}"),
    (r"^decoder\.stages\.(\d+)\.fusion\.convolutional_layer3\.(.+)$", "fusions.{prev}.attention.{1}"),
    (r"^head\.head\.(.+)$", "head.{0}"),
)


def glpn_decoder_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a ``GLPNForDepthEstimation`` state_dict's decoder/head entries to :class:`headstart.heads.depth_decoder.DepthDecoder` keys.

    Encoder (``glpn.*``) entries are dropped; a leading ``model.`` prefix (Lightning) is tolerated.
    Load the result with ``decoder.load_state_dict(mapped, strict=True)``. Stage 0 of
    transformers' decoder has no fusion, so stage ``i``'s fusion becomes ``fusions.{i-1}``.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("model.")
        for pattern, template in _GLPN_KEY_RULES:
            match = re.match(pattern, key)
            if match is None:
                continue
            groups = match.groups()
            stage_minus_one = int(groups[0]) - 1 if groups[0].isdigit() else -1
            mapped[template.format(*groups, prev=stage_minus_one)] = value
            break
    if not mapped:
        raise ValueError("no GLPN decoder/head keys ('decoder.stages.*', 'head.head.*') found in state_dict")
    return mapped
