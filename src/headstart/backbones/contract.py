"""The backbone contract: what the builder and a task may call on a backbone, and the data spec.

Every backbone is an ``nn.Module`` that satisfies :class:`Backbone`; a family adds what its tasks
need (:class:`DenseBackbone`, :class:`TextBackbone`, :class:`AudioBackbone`). Anything else a
task reads is family-specific and named in that backbone's docstring. ``tests/unit/test_backbone_contract.py``
checks every backbone class against its protocol with a tiny preset.

The build exchange (``run/build.py``), once per run::

    answer = datamodule.configure(backbone.data_spec())   # DataSpec: what the inputs must look like
    backbone.attach(**answer)                              # e.g. a tokenizer trained for a preset
    backbone.save_for_rebuild()                            # training only, where defined: files on disk
    meta["model_rebuild"] = backbone.rebuild_kwargs()      # pure: constructor overrides, offline
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict, runtime_checkable

import torch


class TokenizerTraining(TypedDict, total=False):
    """How the data trains a preset's tokenizer (data/tokenizers.py)."""

    family: str  # bert | gpt2 | bart | t5
    kind: str  # wordpiece | bytelevel_bpe | unigram (follows from family when absent)
    vocab_size: int
    extra_ids: int  # t5 sentinels


class DataSpec(TypedDict, total=False):
    """What a backbone tells its datamodule about the inputs (``data_spec()``); each family sets its keys."""

    # vision: resize / normalise
    image_size: int  # shortest side (or square side) the model expects
    max_size: int  # longest side (DETR)
    size_multiple: int  # sides padded to a multiple of this (GLPN)
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    # audio: waveform rate and frame geometry
    sample_rate: int
    frame_stride: int  # samples per output frame
    receptive_field: int  # samples one frame sees
    normalize: bool  # zero-mean unit-variance waveforms
    ctc_vocab: dict[str, int] | None  # the labels a rebuilt CTC model was trained with
    pretrained_vocab: dict[str, int] | None  # the labels of a fine-tuned CTC checkpoint's head
    # text: the tokenizer or how to train one
    tokenizer: Any  # a transformers tokenizer; None for a preset (the data trains one)
    tokenizer_training: TokenizerTraining
    max_length: int | None  # longest sequence in tokens
    architecture: str  # causal | seq2seq
    model_type: str  # transformers family (bart, t5, ...): picks the denoising noise


@runtime_checkable
class Backbone(Protocol):
    """What every backbone offers.

    ``forward`` (``backbone(...)``) takes the batch's model inputs (``pixel_values`` [B, 3, H, W];
    ``input_ids`` / ``attention_mask`` [B, L]; ``waveforms`` [B, T] with ``lengths`` [B]) and returns
    the family's small dataclass (``backbones/base.py``: ``EncoderOutput`` with ``hidden_states``
    [B, L, D], ``pooled`` [B, D], ``feature_maps`` [B, C_i, H_i, W_i]; or a hidden-state tensor).
    """

    hidden_size: int  # D of hidden_states / pooled: heads are sized from it

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def data_spec(self) -> DataSpec: ...

    def rebuild_kwargs(self) -> dict[str, Any]: ...


@runtime_checkable
class DenseBackbone(Backbone, Protocol):
    """Backbones of dense tasks (segmentation, depth): multi-scale maps for a decoder."""

    feature_channels: list[int]  # C_i of feature_maps[i]
    feature_strides: list[int]  # s_i: feature_maps[i] is [B, C_i, H / s_i, W / s_i]


@runtime_checkable
class TextBackbone(Backbone, Protocol):
    """Text backbones: a tokenizer, received from the data for a preset."""

    tokenizer: Any

    def attach(self, tokenizer: Any = None, **answer: Any) -> None: ...


@runtime_checkable
class AudioBackbone(Backbone, Protocol):
    """Speech encoders: waveforms at ``sample_rate`` in, frames out."""

    sample_rate: int

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames [B] of waveforms with ``lengths`` [B] valid samples."""
        ...

    def attach(self, ctc_vocab: dict[str, int] | None = None) -> None: ...
