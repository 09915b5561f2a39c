"""SegFormer's Mix Transformer encoder (transformers' ``SegformerModel``) as a multi-scale backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import SegformerModel

from headstart.backbones.base import CheckpointHead, EncoderOutput, load_or_explain, load_task_model, task_architecture
from headstart.backbones.contract import DataSpec
from headstart.backbones.hf_vision import build_hf_config, processor_image_spec


class SegformerBackbone(nn.Module):
    """forward(pixel_values [B, 3, H, W]) -> EncoderOutput with feature_maps, finest first:
    [B, C_i, H / s_i, W / s_i] for s_i in feature_strides (4, 8, 16, 32).

    Declares ``feature_channels``, ``feature_strides`` and ``decoder_hidden_size`` (the all-MLP
    decoder width of the checkpoint's config), from which the task sizes its decoder head.
    """

    def __init__(
        self,
        checkpoint: str,
        preset: str | None = None,
        presets: dict[str, dict] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        freeze: bool = False,
        image_size: int | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        hf_config, load_weights = build_hf_config(checkpoint, preset, dict(presets or {}), dict(config or {}), pretrained)
        load_weights = load_weights and pretrained
        self.checkpoint_head: CheckpointHead | None = None
        architecture = task_architecture(hf_config, ("ForSemanticSegmentation",))
        if load_weights and architecture:  # a fine-tuned model: its decode head is offered to the task
            self.model, self.checkpoint_head = load_task_model(checkpoint, architecture, config=hf_config)
        elif load_weights:
            self.model = load_or_explain(lambda: SegformerModel.from_pretrained(checkpoint, config=hf_config), checkpoint)
        else:
            self.model = SegformerModel(hf_config)
        cfg = self.model.config
        self.feature_channels = [int(c) for c in cfg.hidden_sizes]
        strides, stride = [], 1
        for s in cfg.strides:
            stride *= int(s)
            strides.append(stride)
        self.feature_strides = strides
        self.hidden_size = self.feature_channels[-1]
        self.decoder_hidden_size = int(cfg.decoder_hidden_size)
        default_size = 512 if load_weights else int(getattr(cfg, "image_size", 512))  # a default config has none
        self._spec = processor_image_spec(checkpoint if load_weights else None, image_size, image_mean, image_std, default_size)
        if freeze:
            self.model.requires_grad_(False)

    def data_spec(self) -> DataSpec:
        """image_size (crop side), image_mean, image_std."""
        return dict(self._spec)

    def rebuild_kwargs(self) -> dict[str, Any]:
        return {
            "preset": None,
            "pretrained": False,
            "config": self.model.config.to_dict(),
            **{key: list(value) if isinstance(value, tuple) else value for key, value in self._spec.items()},
        }

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        maps = list(out.hidden_states)  # [B, C_i, H_i, W_i] per stage (reshape_last_stage keeps maps)
        return EncoderOutput(feature_maps=maps)
