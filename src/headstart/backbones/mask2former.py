"""Mask2Former (transformers' ``Mask2FormerModel``) as a backbone: per-layer query states and mask logits.

The class head lives in headstart (``heads.mask_class.MaskClassHead``); the model's own mask
predictor gives every decoder layer's mask logits. ``output_hidden_states=True`` is what makes
transformers return the per-layer query states (``transformer_decoder_intermediate_states``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Mask2FormerModel

from headstart.backbones.base import CheckpointHead, load_or_explain, load_task_model, task_architecture
from headstart.backbones.contract import DataSpec
from headstart.backbones.hf_vision import build_hf_config, processor_image_spec


@dataclass
class MaskQueryOutput:
    """query_states: [L, B, Q, D] every decoder layer's queries (last = final layer).
    mask_logits: [L, B, Q, h, w] the matching mask logits at 1/4 of the input size.
    """

    query_states: torch.Tensor
    mask_logits: torch.Tensor


class Mask2FormerBackbone(nn.Module):
    """forward(pixel_values [B, 3, H, W], H and W multiples of 32) -> MaskQueryOutput.

    checkpoint: hub id or local directory of a Mask2Former checkpoint (a
    ``Mask2FormerForUniversalSegmentation`` checkpoint loads too; its class head is offered to the
    task as ``checkpoint_head``, kept when its labels are the data's).
    checkpoints: the default checkpoint per ``task.mode``, from which the model config picks
    ``checkpoint`` (kept here only so the table lives beside the model's other settings).
    preset: a named small config from ``presets`` (random init, offline; Swin backbone config
    with ``use_pretrained_backbone: false``).
    """

    def __init__(
        self,
        checkpoint: str,
        checkpoints: dict[str, str] | None = None,
        preset: str | None = None,
        presets: dict[str, dict] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        freeze_encoder: bool = False,
        image_size: int | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        hf_config, load_weights = build_hf_config(checkpoint, preset, dict(presets or {}), dict(config or {}), pretrained)
        load_weights = load_weights and pretrained
        self.checkpoint_head: CheckpointHead | None = None
        architecture = task_architecture(hf_config, ("ForUniversalSegmentation",))
        if load_weights and architecture:  # a fine-tuned model: its class head is offered to the task
            self.model, self.checkpoint_head = load_task_model(checkpoint, architecture, config=hf_config)
        elif load_weights:
            self.model = load_or_explain(
                lambda: Mask2FormerModel.from_pretrained(checkpoint, config=hf_config), checkpoint
            )
        else:
            self.model = Mask2FormerModel(hf_config)
        self.hidden_size = int(self.model.config.hidden_dim)
        self.num_queries = int(self.model.config.num_queries)
        # Random-init presets train at their backbone's image size; checkpoints at their processor's.
        default_size = 512 if load_weights else int(getattr(hf_config.backbone_config, "image_size", 512))
        self._spec = processor_image_spec(checkpoint if load_weights else None, image_size, image_mean, image_std, default_size)
        if freeze_encoder:
            self.model.pixel_level_module.encoder.requires_grad_(False)

    def data_spec(self) -> DataSpec:
        """image_size (crop side, a multiple of 32), image_mean, image_std."""
        return dict(self._spec)

    def rebuild_kwargs(self) -> dict[str, Any]:
        return {
            "preset": None,
            "pretrained": False,
            "config": self.model.config.to_dict(),
            **{key: list(value) if isinstance(value, tuple) else value for key, value in self._spec.items()},
        }

    def forward(self, pixel_values: torch.Tensor) -> MaskQueryOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        # intermediate states are [Q, B, D] per layer.
        queries = torch.stack([state.transpose(0, 1) for state in out.transformer_decoder_intermediate_states])
        return MaskQueryOutput(query_states=queries, mask_logits=torch.stack(list(out.masks_queries_logits)))
