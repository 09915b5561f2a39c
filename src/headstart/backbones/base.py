"""What every backbone returns and the one way headstart loads pretrained weights.

A backbone wraps a library model and declares the sizes heads need
(``hidden_size``; ``feature_channels`` / ``feature_strides`` for dense tasks).
Its ``forward`` returns one of the small dataclasses below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class HubUnreachableError(RuntimeError):
    """A checkpoint could not be loaded and the cause is the network or a missing local dir."""


@dataclass
class EncoderOutput:
    """Output of sequence / image encoders.

    hidden_states: [B, L, D] last-layer states (L tokens, patches or frames).
    attention_mask: [B, L] 1 for real positions, 0 for padding (None when nothing is padded).
    pooled: [B, D] one vector per example ([CLS] for ViT/BERT, pooled map for ConvNeXT).
    feature_maps: multi-scale maps [B, C_i, H_i, W_i] for dense heads (may be empty).
    """

    hidden_states: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    feature_maps: list[torch.Tensor] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointHead:
    """The head of a transformers task model a backbone was loaded from (``model.checkpoint`` =
    a ``save_pretrained`` directory or hub id of e.g. ``BertForTokenClassification``): its class
    name, its labels in row order (``id2label``; None when it has none) and its weights under
    transformers' names. Kept aside, not as parameters: the task decides whether it fits."""

    architecture: str
    labels: list[str] | None
    state: dict[str, torch.Tensor]


def task_architecture(config: Any, suffixes: tuple[str, ...]) -> str | None:
    """The checkpoint's transformers task class (``config.architectures``) ending in one of ``suffixes``."""
    return next((arch for arch in getattr(config, "architectures", None) or [] if arch.endswith(suffixes)), None)


def load_task_model(checkpoint: str, architecture: str, **kwargs: Any) -> tuple[Any, CheckpointHead]:
    """Load the task class ``architecture`` from ``checkpoint``; (its encoder, its head aside)."""
    import transformers

    full = load_or_explain(lambda: getattr(transformers, architecture).from_pretrained(checkpoint, **kwargs), checkpoint)
    prefix = full.base_model_prefix
    id2label = getattr(full.config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))] or None
    state = {key: value.detach().clone() for key, value in full.state_dict().items() if not key.startswith(prefix + ".")}
    return full.base_model, CheckpointHead(architecture, labels, state)


def head_weights_from_files(checkpoint: str, architecture: str, prefix: str) -> CheckpointHead | None:
    """The weights outside the encoder (``prefix``) of a checkpoint's ``model.safetensors`` (a local
    directory or the hub cache), read without building the class: for pretraining classes whose
    encoder transformers builds without parts headstart keeps (``BertForMaskedLM`` has no pooler,
    so its encoder is loaded as ``AutoModel`` and only the MLM head is read here). None without
    a safetensors file."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    try:
        path = cached_file(checkpoint, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        return None
    if path is None:
        return None
    with safe_open(path, framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys() if not key.startswith(prefix + ".")}
    return CheckpointHead(architecture, None, state)


def load_or_explain(load: Callable[[], T], checkpoint: str) -> T:
    """Run ``load()`` (a ``from_pretrained`` call); turn a hub/network failure into one line.

    The message names both ways out: ``model.preset=tiny`` and a local ``model.checkpoint``.
    """
    try:
        return load()
    except (OSError, ValueError) as err:  # transformers raises OSError for missing repos / offline
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HubUnreachableError(
            f"could not load checkpoint '{checkpoint}' ({text[:200]}); without network access use "
            f"model.preset=tiny (small random-init model) or model.checkpoint=<local directory>"
        ) from err
