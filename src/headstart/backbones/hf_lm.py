"""Language models from transformers (GPT-2, BART, T5, mBART, Marian): backbone and tied LM head in one.

For generative tasks the backbone is the library's whole LM model (``AutoModelForCausalLM`` /
``AutoModelForSeq2SeqLM``) so that ``generate`` is the library's own. headstart still owns the
loss: ``forward`` returns the final hidden states and ``lm_head()`` the head's weight and bias,
which ``headstart.losses.lm.LMLoss`` turns into a chunked cross-entropy (never the full
[tokens x vocab] logits at once).

Where the tokenizer comes from:

* ``checkpoint`` (hub id or local dir): model and ``AutoTokenizer`` both load from it.
* ``preset`` (a named small config, random init, offline): the model waits for a tokenizer;
  ``data_spec()`` asks the data side to train one (``tokenizer_training``: kind, family,
  vocab size) on the task's text, and ``attach(tokenizer=...)`` builds the model with
  ``vocab_size = len(tokenizer)`` and the tokenizer's special ids.
* ``tokenizer_dir``: a saved tokenizer (what ``rebuild_kwargs`` points eval/predict at).

Either way the tokenizer is saved into ``tokenizer_save_dir`` (the run directory), so a
checkpoint rebuilds offline from ``rebuild_kwargs()`` alone.

``source_encoder`` (seq2seq only) puts a new randomly initialised encoder, with its own token
and position embeddings, in front of the model's encoder, as BART's paper does for translation
(``headstart.callbacks.freeze_schedule.FreezeSchedule`` trains it first with the rest frozen).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput

from headstart.backbones.base import load_or_explain
from headstart.backbones.contract import DataSpec
from headstart.backbones.from_scratch import plain, preset_config, random_init_config

Architecture = Literal["causal", "seq2seq"]
_AUTO = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}


def shift_right(labels: torch.Tensor, pad_id: int, start_id: int) -> torch.Tensor:
    """Decoder inputs from labels [B, T]: start id, then labels[:, :-1], with -100 -> pad (as BART/T5 do).

    (``headstart.data.packing.shift_tokens_right`` does the same; backbones do not import data.)
    """
    shifted = labels.new_full(labels.shape, start_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill_(shifted == -100, pad_id)


class SourceEncoder(nn.Module):
    """A small Transformer encoder with its own token and position embeddings.

    forward(input_ids [B, S], attention_mask [B, S]) -> [B, S, d_model]: inputs_embeds for the
    pretrained encoder it feeds.
    """

    def __init__(
        self, vocab_size: int, d_model: int, layers: int = 2, heads: int = 4, ffn_dim: int | None = None,
        max_positions: int = 1024, dropout: float = 0.1, pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.embed_positions = nn.Embedding(max_positions, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn_dim or 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)[None]
        return self.norm(self.layers(hidden, src_key_padding_mask=attention_mask == 0))


class HFLanguageModel(nn.Module):
    """A transformers LM (causal or seq2seq) with its tied LM head, as a headstart backbone.

    forward(input_ids [B, S], attention_mask [B, S], labels [B, T] | None) -> hidden [B, T', D]:
    causal: the last hidden states of the inputs (T' = S); seq2seq: the decoder's last hidden
    states under teacher forcing, decoder inputs = labels shifted right (T' = T). T5's tied
    head rescaling (``d_model ** -0.5``) is applied here, so ``hidden @ W.T + b`` are the logits.

    checkpoint: hub id or local directory (weights and tokenizer).
    architecture: causal (GPT-2) or seq2seq (BART, T5, mBART, Marian).
    preset / presets: a named small random-init config (``vocab_size`` comes from the tokenizer).
    tokenizer_training: kind, family and vocab_size of the tokenizer trained for a preset.
    tokenizer_dir: load the tokenizer from here (a rebuilt run); tokenizer_kwargs: passed to
    ``AutoTokenizer.from_pretrained`` (e.g. mBART's ``src_lang`` / ``tgt_lang``).
    tokenizer_save_dir: where the tokenizer is saved for eval/predict (the run directory).
    task_prefixes: task name -> source prefix (T5's "summarize: "); read by the data configs.
    source_encoder: None, or SourceEncoder kwargs (layers, heads, ffn_dim, dropout).
    """

    def __init__(
        self,
        checkpoint: str,
        architecture: Architecture = "causal",
        preset: str | None = None,
        presets: dict[str, dict[str, Any]] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        tokenizer_training: dict[str, Any] | None = None,
        tokenizer_dir: str | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        tokenizer_save_dir: str | None = None,
        task_prefixes: dict[str, str] | None = None,
        source_encoder: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if architecture not in _AUTO:
            raise ValueError(f"model.architecture={architecture} is not one of {sorted(_AUTO)}")
        if source_encoder and architecture != "seq2seq":
            raise ValueError("model.source_encoder needs an encoder-decoder model (architecture=seq2seq)")
        self.checkpoint = checkpoint
        self.architecture: Architecture = architecture
        self.preset = preset
        self.loaded_weights = False
        self.tokenizer_training = plain(tokenizer_training or {})
        self.tokenizer_kwargs = plain(tokenizer_kwargs or {})
        self.tokenizer_save_dir = tokenizer_save_dir
        self.task_prefixes = dict(task_prefixes or {})
        self.source_encoder_kwargs = plain(source_encoder) if source_encoder else None
        self.model_kwargs = plain(model_kwargs or {})
        self.gradient_checkpointing = gradient_checkpointing
        self.freeze = freeze
        self.tokenizer: Any = None
        self.model: PreTrainedModel | None = None
        self.source_encoder: SourceEncoder | None = None
        self._tokenizer_source = tokenizer_dir or checkpoint
        overrides = plain(config or {})
        if preset is not None:
            self.model_config: PretrainedConfig = preset_config(preset, presets, overrides)
            if tokenizer_dir:
                self.attach(tokenizer=self._load_tokenizer(tokenizer_dir))
        elif "model_type" in overrides:  # rebuilt from a checkpoint's meta: no hub, weights come later
            self.model_config = AutoConfig.for_model(**overrides)
            self.tokenizer = self._load_tokenizer(self._tokenizer_source)
            self._set_model(_AUTO[architecture].from_config(self.model_config, **self.model_kwargs))
        elif not pretrained and not (scratch := random_init_config(checkpoint, plain(presets or {}), overrides))[1]:
            # pretrained=false without the hub: the family's default config (backbones.from_scratch),
            # a tokenizer trained on the task's text and the model built when it arrives, as a preset
            self.model_config = scratch[0]
            self.preset = "default"
            if tokenizer_dir:
                self.attach(tokenizer=self._load_tokenizer(tokenizer_dir))
        else:
            self.tokenizer = self._load_tokenizer(self._tokenizer_source)
            self.model_config = load_or_explain(lambda: AutoConfig.from_pretrained(checkpoint), checkpoint)
            for key, value in overrides.items():
                setattr(self.model_config, key, value)
            auto = _AUTO[architecture]
            self.loaded_weights = bool(pretrained)  # the whole model, output layer included, from the checkpoint
            if pretrained:
                model = load_or_explain(
                    lambda: auto.from_pretrained(checkpoint, config=self.model_config, **self.model_kwargs), checkpoint
                )
            else:
                model = auto.from_config(self.model_config, **self.model_kwargs)
            self._set_model(model)
            self._save_tokenizer()
        self.hidden_size = int(self.model_config.get_text_config().hidden_size)

    # ---- tokenizer and model ----------------------------------------------------------------
    def _load_tokenizer(self, source: str) -> Any:
        return load_or_explain(lambda: AutoTokenizer.from_pretrained(source, **self.tokenizer_kwargs), source)

    def _save_tokenizer(self) -> None:
        if self.preset is not None and not self.tokenizer_save_dir:  # a trained tokenizer must live somewhere
            self.tokenizer_save_dir = tempfile.mkdtemp(prefix="headstart-tokenizer-")
        if self.tokenizer_save_dir and Path(self.tokenizer_save_dir).resolve() != Path(self._tokenizer_source).resolve():
            self.tokenizer.save_pretrained(self.tokenizer_save_dir)
            self._tokenizer_source = str(self.tokenizer_save_dir)

    def attach(self, tokenizer: Any) -> None:
        """Give a preset model its vocabulary and build it (random init, ``vocab_size = len(tokenizer)``).

        The tokenizer's pad / eos / bos ids go into the model config (and so into generation).
        A checkpoint keeps its own tokenizer; another one is refused unless it is the same size.
        """
        if self.preset is None:
            if len(tokenizer) != len(self.tokenizer):
                raise ValueError(
                    f"tokenizer has {len(tokenizer)} tokens but checkpoint '{self.checkpoint}' was "
                    f"trained with {len(self.tokenizer)}; use the checkpoint's own tokenizer"
                )
            self.tokenizer = tokenizer
            return
        self.tokenizer = tokenizer
        config = self.model_config
        config.vocab_size = len(tokenizer)
        for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
            value = getattr(tokenizer, name, None)
            if value is not None:
                setattr(config, name, value)
        if self.architecture == "seq2seq" and getattr(config, "decoder_start_token_id", None) is None:
            config.decoder_start_token_id = tokenizer.pad_token_id
        self._set_model(_AUTO[self.architecture].from_config(config, **self.model_kwargs))
        self._save_tokenizer()

    def _set_model(self, model: PreTrainedModel) -> None:
        self.model = model
        self.model_config = model.config
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if self.freeze:
            model.requires_grad_(False)
        if self.source_encoder_kwargs is not None:
            d_model = int(model.config.get_text_config().hidden_size)
            self.source_encoder = SourceEncoder(
                len(self.tokenizer), d_model, pad_id=self.pad_id,
                max_positions=int(getattr(model.config, "max_position_embeddings", 1024) or 1024),
                **self.source_encoder_kwargs,
            )

    def require_model(self) -> PreTrainedModel:
        if self.model is None:
            raise RuntimeError(f"model.preset={self.preset} has no vocabulary yet: call attach(tokenizer=...) first")
        return self.model

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def data_spec(self) -> DataSpec:
        """tokenizer (None until a preset's one is trained), tokenizer_training, max_length, architecture,
        model_type (the transformers family: bart, t5, mbart... picks the denoising noise)."""
        max_length = getattr(self.model_config, "n_positions", None) or getattr(self.model_config, "max_position_embeddings", None)
        return {
            "tokenizer": self.tokenizer,
            "tokenizer_training": dict(self.tokenizer_training),
            "max_length": max_length,
            "architecture": self.architecture,
            "model_type": str(self.model_config.model_type),
        }

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this model offline: full config + saved tokenizer dir."""
        self.require_model()
        return {
            "preset": None,
            "pretrained": False,
            "config": self.model_config.to_dict(),
            "tokenizer_dir": str(self._tokenizer_source),
        }

    # ---- forward, head, generation -----------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Seq2seq encoder states [B, S, D] (through the new source encoder when there is one)."""
        encoder = self.require_model().get_encoder()
        if self.source_encoder is not None:
            embeds = self.source_encoder(input_ids, attention_mask)
            return encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See the class docstring; labels may hold -100 (they become pad in the decoder inputs)."""
        model = self.require_model()
        if self.architecture == "causal":
            return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if labels is None:
            raise ValueError("a seq2seq forward needs decoder labels (teacher forcing)")
        config = model.config
        decoder_input_ids = shift_right(labels, self.pad_id, int(config.decoder_start_token_id))
        encoded = self.encode(input_ids, attention_mask)
        hidden = model.get_decoder()(
            input_ids=decoder_input_ids, encoder_hidden_states=encoded, encoder_attention_mask=attention_mask
        ).last_hidden_state
        if getattr(config, "scale_decoder_outputs", False):  # T5 with tied embeddings
            hidden = hidden * config.d_model**-0.5
        return hidden

    def lm_head(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight [V, D], bias [V] or None) of the output layer; BART's ``final_logits_bias`` is the bias."""
        model = self.require_model()
        head = model.get_output_embeddings()
        bias = getattr(head, "bias", None)
        final_bias = getattr(model, "final_logits_bias", None)
        if final_bias is not None:
            bias = final_bias[0] if bias is None else bias + final_bias[0]
        return head.weight, bias

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **settings: Any) -> torch.Tensor:
        """Token ids [B, L] from transformers' ``generate`` (causal: the prompt is cut off)."""
        model = self.require_model()
        settings.setdefault("pad_token_id", self.pad_id)
        if self.architecture == "causal":
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
            return out[:, input_ids.shape[1]:]
        encoded = BaseModelOutput(last_hidden_state=self.encode(input_ids, attention_mask))
        return model.generate(encoder_outputs=encoded, attention_mask=attention_mask, **settings)
