"""wav2vec 2.0 (and HuBERT / WavLM) speech encoder on torchaudio's ``Wav2Vec2Model``.

Weights come from, in order of precedence:

- ``preset``: a named architecture from ``presets`` (random init, offline; ``tiny`` builds in
  well under a second for tests and synthetic experiments);
- ``checkpoint`` naming a torchaudio bundle (``WAV2VEC2_BASE``, ``HUBERT_LARGE``, ...):
  ``torchaudio.pipelines.<NAME>.get_model()``;
- ``checkpoint`` as a Hugging Face hub id or local directory: loaded with transformers and
  converted by ``torchaudio.models.wav2vec2.utils.import_huggingface_model``.

A fine-tuned CTC checkpoint also brings its CTC head (``pretrained_ctc_head``) and
vocabulary (``pretrained_vocab``, {token: id}) so a speech-recognition task can start from
them when its vocabulary matches. The head is deliberately *not* a registered submodule:
weights no task uses would sit in the optimizer and trip DDP's unused-parameter check;
a task that wants it copies its state into its own head.

Padding: the ``layer_norm`` feature extractor (wav2vec2-large-lv60 style, used by the
``tiny`` preset) normalises each frame on its own, so a clip gives the same valid-frame
states alone or padded in a batch. The ``group_norm`` extractor of wav2vec2-base
normalises each channel over *all* frames, padding included, so padded batches shift its
outputs slightly; those checkpoints were trained on unpadded single clips and still work,
but batch them by length (``LengthGroupedBatchSampler``) to keep padding small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.backbones import wav2vec2_io
from headstart.backbones.base import EncoderOutput
from headstart.backbones.contract import DataSpec
from headstart.ops.span_mask import span_mask

# Same 7-layer conv stack shape (so frame stride 320 and receptive field 400 samples, as
# the real models) with small channels and a 2-layer, 64-dim transformer.
TINY: dict[str, Any] = {
    "extractor_mode": "layer_norm",
    "extractor_conv_layer_config": [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    "extractor_conv_bias": True,
    "encoder_embed_dim": 64,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 128,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": True,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}
DEFAULT_PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY}
AUTO = "auto"
FINE_TUNING_MASK_TIME_PROB = 0.05  # wav2vec 2.0 fine-tuning (Baevski et al. 2020, HF Wav2Vec2Config)


def _flag(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"model.freeze_feature_encoder={value!r} is not one of auto|true|false")


class Wav2Vec2Backbone(nn.Module):
    """Raw 16 kHz waveform -> frame states every 20 ms.

    Args:
        checkpoint: HF hub id, local HF directory, or torchaudio bundle name.
        preset: name in ``presets``; when set, ``checkpoint`` is ignored (random init).
        presets: extra/overriding presets, name -> ``torchaudio.models.wav2vec2_model`` kwargs.
        freeze_feature_encoder: keep the conv feature encoder fixed. ``"auto"``: fixed when its
            weights come from a checkpoint (wav2vec2 fine-tuning's rule), trained when they are
            random (a preset, or ``pretrained=False``): a frozen random conv stack is a fixed
            random feature map (FSDD, tiny preset, 10 epochs: held-out acc 0.37 frozen vs 0.89).
        layer_drop: probability of skipping each transformer layer in training. With DDP
            and ``layer_drop > 0`` use ``find_unused_parameters=True``.
        mask_time_prob, mask_time_length: SpecAugment in time: about this fraction of valid
            frames, in spans of this many frames, is replaced by a learned embedding.
            ``"auto"``: 0.05 (wav2vec2 fine-tuning's value) on weights from a checkpoint, 0 on
            random weights (a regulariser of pretrained features, not of a model learning them).
        mask_feature_prob, mask_feature_length: spans of feature channels set to zero.
        pretrained: load weights; False builds the checkpoint's architecture randomly.
        freeze_steps: keep the whole backbone frozen for the first N optimizer steps (the
            head learns first); the task calls :meth:`update_freeze` every step. With DDP use
            ``find_unused_parameters=True``.
        ctc_vocab: {token: id} the model's CTC outputs are tied to; attached by the speech
            data (``attach``) and stored in checkpoints so eval/predict rebuild the same labels.
    """

    sample_rate: int = 16000

    def __init__(
        self,
        checkpoint: str = "facebook/wav2vec2-base",
        preset: str | None = None,
        presets: dict[str, dict[str, Any]] | None = None,
        freeze_feature_encoder: bool | str = "auto",
        layer_drop: float = 0.0,
        mask_time_prob: float | str = "auto",
        mask_time_length: int = 10,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 10,
        pretrained: bool = True,
        freeze_steps: int = 0,
        ctc_vocab: dict[str, int] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        masked_embed: torch.Tensor | None = None
        vocab: dict[str, int] | None = None
        self.checkpoint = checkpoint
        self.checkpoint_head: Any = None  # a fine-tuned classifier's head (backbones.base.CheckpointHead)
        overrides = dict(config or {})
        if overrides and (preset is not None or checkpoint.startswith(wav2vec2_io.BUNDLE_PREFIXES)):
            raise ValueError(
                "model.config overrides a Hugging Face checkpoint's Wav2Vec2Config; size a preset with "
                "model.presets.<name>.* (torchaudio wav2vec2_model arguments)"
            )
        if preset is not None:
            model, self.arch = wav2vec2_io.build_preset(preset, {**DEFAULT_PRESETS, **(presets or {})})
        elif checkpoint.startswith(wav2vec2_io.BUNDLE_PREFIXES):
            model, vocab, self.arch = wav2vec2_io.load_bundle(checkpoint, pretrained)
        else:
            model, masked_embed, vocab, self.arch, self.checkpoint_head = wav2vec2_io.load_hf(checkpoint, pretrained, overrides)
        loaded = preset is None and pretrained  # weights from a checkpoint, not random
        freeze_feature_encoder = loaded if freeze_feature_encoder == AUTO else _flag(freeze_feature_encoder)
        mask_time_prob = (FINE_TUNING_MASK_TIME_PROB if loaded else 0.0) if mask_time_prob == AUTO else float(mask_time_prob)
        ctc_head, model.aux = model.aux, None
        # where pretraining-head weights (quantizer, projections) may be read from: HF checkpoints only
        from_hf = preset is None and pretrained and not checkpoint.startswith(wav2vec2_io.BUNDLE_PREFIXES)
        self.checkpoint_source = checkpoint if from_hf else None
        self.model = model
        self.__dict__["_pretrained_ctc_head"] = ctc_head  # unregistered on purpose, see module doc
        self.pretrained_vocab = vocab
        self.model.encoder.transformer.layer_drop = layer_drop
        self.hidden_size: int = model.encoder.feature_projection.projection.out_features
        self.frame_stride: int = 1
        for conv in model.feature_extractor.conv_layers:
            self.frame_stride *= conv.stride
        self.mask_time_prob, self.mask_time_length = mask_time_prob, mask_time_length
        self.mask_feature_prob, self.mask_feature_length = mask_feature_prob, mask_feature_length
        # Only created when used: a parameter that never gets a gradient breaks plain DDP.
        self.masked_spec_embed: nn.Parameter | None = None
        if mask_time_prob > 0:
            init = masked_embed if masked_embed is not None else torch.rand(self.hidden_size)
            self.masked_spec_embed = nn.Parameter(init.detach().clone())
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_steps = freeze_steps
        self.ctc_vocab = dict(ctc_vocab) if ctc_vocab else None
        self._frozen = False
        self.freeze(False)

    # ---- the model/data hand-off ----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """What the audio pipeline needs: sample rate, frame geometry and the CTC vocabularies.

        ``ctc_vocab``: labels this model was trained with (a rebuilt checkpoint; the data must
        use them). ``pretrained_vocab``: labels of a fine-tuned CTC checkpoint's head.
        """
        return {
            "sample_rate": self.sample_rate,
            "frame_stride": self.frame_stride,
            "receptive_field": self.receptive_field,
            "normalize": True,
            "ctc_vocab": dict(self.ctc_vocab) if self.ctc_vocab else None,
            "pretrained_vocab": dict(self.pretrained_vocab) if self.pretrained_vocab else None,
        }

    def attach(self, ctc_vocab: dict[str, int] | None = None) -> None:
        """Receive the CTC vocabulary the data built, so checkpoints carry it (rebuild_kwargs)."""
        if ctc_vocab is not None:
            self.ctc_vocab = dict(ctc_vocab)

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this architecture offline (weights come from a checkpoint)."""
        arch = {k: [list(v) for v in val] if k == "extractor_conv_layer_config" else val for k, val in self.arch.items()}
        return {"preset": "checkpoint", "presets": {"checkpoint": arch}, "pretrained": False, "ctc_vocab": self.ctc_vocab, "config": None,
                # what "auto" chose for the trained run (a rebuild is random-init: auto would differ)
                "freeze_feature_encoder": self.freeze_feature_encoder, "mask_time_prob": self.mask_time_prob}

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame (400 for wav2vec2: 25 ms at 16 kHz)."""
        field = 1
        for conv in reversed(self.model.feature_extractor.conv_layers):
            field = (field - 1) * conv.stride + conv.kernel_size
        return field

    def update_freeze(self, step: int) -> None:
        """Freeze the whole backbone while ``step < freeze_steps`` (called by tasks every step)."""
        frozen = step < self.freeze_steps
        if frozen != self._frozen:
            self.freeze(frozen)
            self._frozen = frozen

    @property
    def pretrained_ctc_head(self) -> nn.Linear | None:
        """The checkpoint's CTC projection [D -> V] (fine-tuned CTC checkpoints only)."""
        return self.__dict__["_pretrained_ctc_head"]

    def freeze(self, frozen: bool = True) -> None:
        """Freeze the whole backbone (e.g. for the first N steps); False unfreezes it again.

        Unfreezing keeps the conv feature encoder fixed when ``freeze_feature_encoder``.
        """
        for param in self.parameters():
            param.requires_grad_(not frozen)
        if self.freeze_feature_encoder:
            for param in self.model.feature_extractor.parameters():
                param.requires_grad_(False)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """lengths: [B] valid samples -> [B] valid frames (conv arithmetic, no padding)."""
        for conv in self.model.feature_extractor.conv_layers:
            lengths = torch.div(lengths - conv.kernel_size, conv.stride, rounding_mode="floor") + 1
            lengths = lengths.clamp(min=0)
        return lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """waveforms: [B, T] float (normalised, 16 kHz); lengths: [B] long valid samples or None.

        Returns EncoderOutput with hidden_states [B, F, D], attention_mask [B, F] long
        (1 = valid frame) and extras["lengths"] [B] valid frames (for CTC).
        """
        features, frame_lengths = self.model.feature_extractor(waveforms, lengths)
        batch, frames, _ = features.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), frames, dtype=torch.long, device=features.device)
        valid = torch.arange(frames, device=features.device)[None, :] < frame_lengths[:, None]  # [B, F]
        x = self.model.encoder.feature_projection(features)
        x = x * valid[..., None].to(x.dtype)  # zero padded frames so the positional conv ignores them
        if self.training:
            x = self._spec_augment(x, frame_lengths)
        # Additive mask [B, 1, F, F] as torchaudio's Encoder builds it: -1e4 underflows to 0 in softmax.
        bias = (~valid)[:, None, None, :].to(x.dtype) * -10000.0
        x = self.model.encoder.transformer(x, attention_mask=bias.expand(batch, 1, frames, frames))
        return EncoderOutput(hidden_states=x, attention_mask=valid.long(), extras={"lengths": frame_lengths})

    def _spec_augment(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """x: [B, F, D] -> x with time spans replaced by the learned embedding, channel spans zeroed."""
        batch, frames, dim = x.shape
        if self.masked_spec_embed is not None:
            time_mask = span_mask(frame_lengths, frames, self.mask_time_prob, self.mask_time_length)
            x = torch.where(time_mask[..., None], self.masked_spec_embed.to(x.dtype), x)
        if self.mask_feature_prob > 0:
            dims = torch.full((batch,), dim, dtype=torch.long, device=x.device)
            feat_mask = span_mask(dims, dim, self.mask_feature_prob, self.mask_feature_length)
            x = x.masked_fill(feat_mask[:, None, :], 0.0)
        return x

    # ---- pretraining (task=audio_pretraining) and the Hugging Face export -------------------------
    def ensure_mask_embedding(self) -> nn.Parameter:
        """The learned mask embedding [D] (created, uniform like HF's init, when mask_time_prob=0 left it out)."""
        if self.masked_spec_embed is None:
            self.masked_spec_embed = nn.Parameter(torch.rand(self.hidden_size))
        return self.masked_spec_embed

    def encode_masked(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None, time_mask: torch.Tensor | None,
        feature_grad_mult: float = 1.0,
    ) -> PretrainingFeatures:
        """waveforms [B, T], lengths [B], time_mask [B, F] bool (True: replace the frame by the mask
        embedding before the transformer) -> PretrainingFeatures. No SpecAugment of its own.

        feature_grad_mult scales the gradient reaching the conv feature encoder (fairseq's
        ``feature_grad_mult``: 0.1 for wav2vec2-base pretraining).
        """
        features, frame_lengths = self.model.feature_extractor(waveforms, lengths)
        if feature_grad_mult != 1.0:
            features = features * feature_grad_mult + features.detach() * (1.0 - feature_grad_mult)
        batch, frames, _ = features.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), frames, dtype=torch.long, device=features.device)
        valid = torch.arange(frames, device=features.device)[None, :] < frame_lengths[:, None]
        projection = self.model.encoder.feature_projection
        normed = projection.layer_norm(features)
        x = projection.dropout(projection.projection(normed))
        x = x * valid[..., None].to(x.dtype)
        if time_mask is not None:
            x = torch.where(time_mask[..., None], self.ensure_mask_embedding().to(x.dtype), x)
        bias = (~valid)[:, None, None, :].to(x.dtype) * -10000.0
        x = self.model.encoder.transformer(x, attention_mask=bias.expand(batch, 1, frames, frames))
        return PretrainingFeatures(features, normed, x, valid, frame_lengths)

    # ---- export to / continued pretraining from transformers (backbones/wav2vec2_io.py) ----------
    def hf_config(self, **extra: Any) -> Any:
        """The transformers ``Wav2Vec2Config`` of this architecture; ``extra`` adds or overrides keys."""
        return wav2vec2_io.hf_config(self, **extra)

    def copy_into_hf(self, hf_base: nn.Module) -> None:
        """Load this backbone's weights into a transformers ``Wav2Vec2Model`` (strict)."""
        wav2vec2_io.copy_into_hf(self, hf_base)

    def save_pretrained(self, directory: str | Path, pretraining_head: dict[str, Any] | None = None) -> None:
        """Write a Hugging Face directory (see :func:`wav2vec2_io.save_pretrained`)."""
        wav2vec2_io.save_pretrained(self, directory, pretraining_head)

    def pretraining_head_state(self) -> dict[str, Any] | None:
        """The loaded ``Wav2Vec2ForPreTraining`` checkpoint's quantizer and projections, or None."""
        return wav2vec2_io.pretraining_head_state(self)


@dataclass
class PretrainingFeatures:
    """What the contrastive objective needs from one forward pass (all [B, F, ...], F frames).

    features: conv feature-encoder output before its layer norm [B, F, C] (the feature penalty);
    normed: ``feature_projection.layer_norm(features)`` [B, F, C], the quantizer's input (HF's
    ``extract_features``); hidden_states: transformer output [B, F, D] with masked frames replaced
    by the mask embedding at its input; valid: [B, F] bool; lengths: [B] valid frames.
    """

    features: torch.Tensor
    normed: torch.Tensor
    hidden_states: torch.Tensor
    valid: torch.Tensor
    lengths: torch.Tensor
