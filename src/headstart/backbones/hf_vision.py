"""Image encoders from transformers (ViT, ConvNeXT, and any ``AutoModel`` image family).

Which vector is "pooled" and where the blocks live differ per family; both are
set in the model YAML (``pooling``, ``blocks_attr``), not in code.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, PretrainedConfig

from headstart.backbones.base import CheckpointHead, EncoderOutput, load_or_explain, load_task_model, task_architecture
from headstart.backbones.contract import DataSpec
from headstart.backbones.from_scratch import preset_config, random_init_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_hf_config(
    checkpoint: str,
    preset: str | None,
    presets: dict[str, dict],
    overrides: dict[str, Any],
    pretrained: bool = True,
    scratch_defaults: dict[str, Any] | None = None,
    **load_kwargs: Any,
) -> tuple[PretrainedConfig, bool]:
    """Resolve the model config. Returns (config, load_weights).

    preset: a named small config from ``presets`` (random init, offline).
    overrides: config keys to change; with ``model_type`` among them the config is
    built from scratch (used when a checkpoint is reloaded without the hub).
    pretrained=False: the checkpoint's config when reachable, else the family's default config
    (``scratch_defaults`` + overrides; see ``backbones.from_scratch``); load_weights is False.
    load_kwargs: ``AutoConfig.from_pretrained`` arguments for that case (e.g. ``revision``).
    """
    if preset is not None:
        return preset_config(preset, presets, overrides), False
    if "model_type" in overrides:
        return AutoConfig.for_model(**overrides), False
    if not pretrained:
        return random_init_config(checkpoint, presets, overrides, scratch_defaults, **load_kwargs)[0], False
    config = load_or_explain(lambda: AutoConfig.from_pretrained(checkpoint), checkpoint)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config, True


class HFImageEncoder(nn.Module):
    """A transformers image model as a headstart backbone.

    forward(pixel_values [B, 3, H, W]) -> EncoderOutput with
    hidden_states [B, L, D] (tokens for ViT, flattened last map for CNNs), pooled [B, D].
    """

    def __init__(
        self,
        checkpoint: str,
        preset: str | None = None,
        presets: dict[str, dict] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        pooling: Literal["cls", "pooler", "mean"] = "pooler",
        blocks_attr: str = "encoder.layer",
        forward_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        freeze: bool = False,
        freeze_blocks: int = 0,
        image_size: int | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.pooling = pooling
        self.blocks_attr = blocks_attr
        self.forward_kwargs = dict(forward_kwargs or {})
        hf_config, load_weights = build_hf_config(checkpoint, preset, dict(presets or {}), dict(config or {}), pretrained)
        load_weights = load_weights and pretrained
        model_kwargs = dict(model_kwargs or {})
        self.checkpoint_head: CheckpointHead | None = None
        architecture = task_architecture(hf_config, ("ForImageClassification",))
        if load_weights and architecture:  # a fine-tuned classifier: its head is offered to the task
            # (model_kwargs such as add_pooling_layer are the task class's own choice there)
            self.model, self.checkpoint_head = load_task_model(checkpoint, architecture, config=hf_config)
        elif load_weights:
            self.model = load_or_explain(
                lambda: AutoModel.from_pretrained(checkpoint, config=hf_config, **model_kwargs), checkpoint
            )
        else:
            self.model = AutoModel.from_config(hf_config, **model_kwargs)
        self.hidden_size = int(_hidden_size(self.model.config))
        self._spec = self._data_spec(load_weights, image_size, image_mean, image_std)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if freeze:
            self.model.requires_grad_(False)
        elif freeze_blocks > 0:
            self.freeze_first_blocks(freeze_blocks)

    def _data_spec(
        self,
        from_checkpoint: bool,
        image_size: int | None,
        image_mean: tuple[float, ...] | None,
        image_std: tuple[float, ...] | None,
    ) -> dict[str, Any]:
        checkpoint = self.checkpoint if from_checkpoint else None
        default_size = getattr(self.model.config, "image_size", 224)
        return processor_image_spec(checkpoint, image_size, image_mean, image_std, default_size)

    def data_spec(self) -> DataSpec:
        """What the data pipeline needs from this model: image_size, image_mean, image_std."""
        return dict(self._spec)

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this architecture offline (weights come from a checkpoint)."""
        return {
            "preset": None,
            "pretrained": False,
            "config": self.model.config.to_dict(),
            **{key: list(value) if isinstance(value, tuple) else value for key, value in self._spec.items()},
        }

    def blocks(self) -> nn.ModuleList:
        module: Any = self.model
        for part in self.blocks_attr.split("."):
            module = getattr(module, part)
        return module

    def freeze_first_blocks(self, n: int) -> None:
        """Freeze the embeddings and the first ``n`` blocks (for ConvNeXT, stages)."""
        blocks = self.blocks()
        if n > len(blocks):
            raise ValueError(f"model.freeze_blocks={n} but the backbone has {len(blocks)} blocks")
        embeddings = getattr(self.model, "embeddings", None)
        if embeddings is not None:
            embeddings.requires_grad_(False)
        for block in list(blocks)[:n]:
            block.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        out = self.model(pixel_values=pixel_values, **self.forward_kwargs)
        last = out.last_hidden_state
        if last.dim() == 4:  # CNN: [B, C, h, w] -> tokens [B, h*w, C]
            hidden = last.flatten(2).transpose(1, 2)
        else:
            hidden = last
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":  # average of the patch tokens (a [CLS] token, if any, left out)
            skip = 1 if getattr(getattr(self.model, "embeddings", None), "cls_token", None) is not None else 0
            pooled = hidden[:, skip:].mean(dim=1)
        else:
            pooled = out.pooler_output
            if pooled.dim() > 2:
                pooled = pooled.flatten(1)
        return EncoderOutput(hidden_states=hidden, pooled=pooled)


def _hidden_size(config: PretrainedConfig) -> int:
    if getattr(config, "hidden_size", None) is not None and not hasattr(config, "hidden_sizes"):
        return config.hidden_size
    if getattr(config, "hidden_sizes", None):
        return config.hidden_sizes[-1]
    return config.hidden_size


def processor_image_spec(
    checkpoint: str | None,
    image_size: int | None,
    image_mean: tuple[float, ...] | None,
    image_std: tuple[float, ...] | None,
    default_size: int,
) -> dict[str, Any]:
    """Mean/std (and size) from the checkpoint's image processor when there is one; ImageNet's otherwise."""
    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, default_size
    if checkpoint is not None:
        try:
            proc = AutoImageProcessor.from_pretrained(checkpoint)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
            proc_size = getattr(proc, "size", None) or {}
            size = proc_size.get("height") or proc_size.get("shortest_edge") or size
        except (OSError, ValueError):
            pass
    return {
        "image_size": int(image_size or size),
        "image_mean": tuple(image_mean or mean),
        "image_std": tuple(image_std or std),
    }
