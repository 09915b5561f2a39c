"""Text encoders from transformers (BERT, DistilBERT, RoBERTa, DeBERTa, MiniLM: any ``AutoModel`` encoder).

The tokenizer always comes from the same place as the weights:

* ``checkpoint`` (hub id or local dir): model and ``AutoTokenizer`` both load from it.
* ``preset`` (a named small config, random init, offline): there are no weights and no
  vocabulary yet, so the caller hands over a tokenizer (typically trained on the fly by the
  data side) through ``attach_tokenizer``; the model is built then, with
  ``vocab_size = len(tokenizer)``. ``save_pretrained`` writes config, weights and tokenizer
  together, so the directory is a valid ``checkpoint`` afterwards.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from headstart.backbones.base import (
    CheckpointHead,
    EncoderOutput,
    head_weights_from_files,
    load_or_explain,
    load_task_model,
    task_architecture,
)
from headstart.backbones.contract import DataSpec
from headstart.backbones.from_scratch import plain, preset_config, random_init_config


def _resolved(path: str) -> Path | None:
    return Path(path).resolve() if Path(path).exists() else None


def _json_config(config: PretrainedConfig) -> dict[str, Any]:
    """The config's own keys (what ``config.json`` holds), JSON-able; no library bookkeeping."""
    skip = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "model_type"}
    return {k: v for k, v in config.to_diff_dict().items() if k not in skip}


# transformers task classes whose head a text task can keep (model.checkpoint = a fine-tuned model)
TASK_CLASSES = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
# pretraining classes whose heads task=masked_lm keeps (the encoder itself loads as AutoModel)
PRETRAINING_CLASSES = ("ForPreTraining", "ForMaskedLM")


class HFTextEncoder(nn.Module):
    """A transformers text encoder as a headstart backbone.

    forward(input_ids [B, L], attention_mask [B, L], token_type_ids [B, L] | None)
    -> EncoderOutput(hidden_states [B, L, D], attention_mask [B, L], pooled [B, D] = hidden_states[:, 0]).

    checkpoint: hub id or local directory holding weights and tokenizer (ignored when ``preset`` is set).
    preset: name of an entry of ``presets`` to build a random-init model offline.
    presets: name -> dict with ``model_type`` and config kwargs (``vocab_size`` comes from the tokenizer).
    pretrained: load the checkpoint's weights; False builds its architecture with random init.
    config: config keys to override (e.g. ``hidden_dropout_prob``).
    gradient_checkpointing: recompute activations in backward to save memory.
    freeze: no gradients into the encoder (only the head trains).
    save_dir: where ``save_for_rebuild`` writes config + tokenizer (in the run directory), so a
        checkpoint of this run rebuilds offline with the very tokenizer it was trained with.
    tokenizer_vocab_size: vocabulary size of the tokenizer a preset trains on the task's text.
    """

    def __init__(
        self,
        checkpoint: str = "bert-base-uncased",
        preset: str | None = None,
        presets: dict[str, dict[str, Any]] | None = None,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        freeze: bool = False,
        save_dir: str | None = None,
        tokenizer_vocab_size: int = 2000,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.save_dir = save_dir
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.preset = preset
        self.gradient_checkpointing = gradient_checkpointing
        self.freeze = freeze
        self.tokenizer: Any = None
        self.model: PreTrainedModel | None = None
        self.checkpoint_head: CheckpointHead | None = None
        overrides = plain(config or {})
        if preset is not None:
            # Built now so hidden_size is known before the tokenizer arrives; the model waits for it.
            self.model_config: PretrainedConfig = preset_config(preset, presets, overrides)
        elif not pretrained:
            self._random_init(checkpoint, plain(presets or {}), overrides)
        else:
            self._load_checkpoint(checkpoint, pretrained, overrides)
        self.hidden_size = int(self.model_config.hidden_size)

    def _random_init(self, checkpoint: str, presets: dict[str, Any], overrides: dict[str, Any]) -> None:
        """``pretrained=False``: the checkpoint's architecture and tokenizer when reachable; otherwise
        the family's default config with ``config`` overrides, and (like a preset) a tokenizer
        trained on the task's text, the model being built when it is attached."""
        self.model_config, from_checkpoint = random_init_config(checkpoint, presets, overrides)
        if from_checkpoint:
            self.tokenizer = load_or_explain(lambda: AutoTokenizer.from_pretrained(checkpoint), checkpoint)
            self._set_model(AutoModel.from_config(self.model_config))
        else:
            self.preset = "default"  # waits for a trained tokenizer, as a preset does

    def _load_checkpoint(self, checkpoint: str, pretrained: bool, overrides: dict[str, Any]) -> None:
        self.tokenizer = load_or_explain(lambda: AutoTokenizer.from_pretrained(checkpoint), checkpoint)
        self.model_config = load_or_explain(lambda: AutoConfig.from_pretrained(checkpoint), checkpoint)
        for key, value in overrides.items():
            setattr(self.model_config, key, value)
        architecture = task_architecture(self.model_config, TASK_CLASSES)
        if pretrained and architecture:  # a fine-tuned task model: its head is offered to the task
            model, self.checkpoint_head = load_task_model(checkpoint, architecture, config=self.model_config)
        elif pretrained:
            model = load_or_explain(
                lambda: AutoModel.from_pretrained(checkpoint, config=self.model_config), checkpoint
            )
            pretraining = task_architecture(self.model_config, PRETRAINING_CLASSES)
            if pretraining:  # its MLM (and NSP) head, for task=masked_lm to continue pretraining from
                self.checkpoint_head = head_weights_from_files(checkpoint, pretraining, model.base_model_prefix)
        else:
            model = AutoModel.from_config(self.model_config)
        self._set_model(model)

    def attach_tokenizer(self, tokenizer: Any) -> None:
        """Give a preset model its vocabulary and build it (random init, ``vocab_size = len(tokenizer)``).

        With a checkpoint the tokenizer is already the checkpoint's own; attaching another one is
        refused unless it has the same vocabulary size (the embeddings would not match it).
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
        self.model_config.vocab_size = len(tokenizer)
        if tokenizer.pad_token_id is not None:
            self.model_config.pad_token_id = tokenizer.pad_token_id
        self._set_model(AutoModel.from_config(self.model_config))

    def attach(self, tokenizer: Any = None, **_: Any) -> None:
        """The build protocol's answer (``datamodule.configure(data_spec())``): a tokenizer for a preset."""
        if tokenizer is not None:
            self.attach_tokenizer(tokenizer)

    def save_for_rebuild(self) -> None:
        """Write config and tokenizer to ``save_dir`` (the run directory), for :meth:`rebuild_kwargs`.

        The builder calls this once when training starts; a rebuilt run (``checkpoint`` already
        there) and a model without ``save_dir`` write nothing.
        """
        self._require_model()
        if self.save_dir is None:
            return
        directory = Path(self.save_dir).resolve()
        if _resolved(self.checkpoint) != directory:
            directory.mkdir(parents=True, exist_ok=True)
            self.model_config.save_pretrained(str(directory))
            self.tokenizer.save_pretrained(str(directory))
        self._rebuild_dir = str(directory)

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Constructor overrides that rebuild this architecture offline, its tokenizer included (no
        side effects: the files are written by :meth:`save_for_rebuild`).

        The rebuild points ``checkpoint`` at the saved directory (else at the checkpoint this model
        came from) with ``pretrained=False``: the weights come from the Lightning checkpoint, the
        tokenizer from the same directory as the config, so neither the hub nor the training text
        is needed again.
        """
        self._require_model()
        directory = getattr(self, "_rebuild_dir", None) or (self.checkpoint if self.preset is None else None)
        if directory is None:
            raise RuntimeError("a preset model's tokenizer must be saved first: model.save_dir and save_for_rebuild()")
        return {"checkpoint": directory, "preset": None, "pretrained": False, "config": _json_config(self.model_config)}

    def _set_model(self, model: PreTrainedModel) -> None:
        # from_pretrained returns the model in eval mode; Lightning keeps modules' modes as found,
        # so without this dropout would stay off while fine-tuning.
        self.model = model.train()
        self.model_config = model.config
        params = inspect.signature(model.forward).parameters
        # DistilBERT has no segment embeddings; RoBERTa has one (type_vocab_size=1), so ids of 1 would
        # index out of range: both get the model's default (all zeros) instead.
        self._takes_token_types = "token_type_ids" in params and getattr(model.config, "type_vocab_size", 2) > 1
        if self.gradient_checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
        if self.freeze:
            model.requires_grad_(False)

    def data_spec(self) -> DataSpec:
        """What the data pipeline needs from this model: the tokenizer (None for a preset: the data
        trains one by ``tokenizer_training``, data/tokenizers.py, and answers with it) and the
        longest sequence."""
        return {
            "tokenizer": self.tokenizer,
            "tokenizer_training": {"family": "bert", "kind": "wordpiece", "vocab_size": self.tokenizer_vocab_size},
            "max_length": getattr(self.model_config, "max_position_embeddings", None),
        }

    def hf_config(self) -> dict[str, Any]:
        """The full model config, enough to rebuild the architecture without the hub."""
        return self.model_config.to_dict()

    def save_pretrained(self, directory: str) -> None:
        """Write config, weights and tokenizer into ``directory`` (loadable as ``checkpoint``)."""
        self._require_model()
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def input_embeddings(self) -> nn.Embedding:
        """The token embedding table [V, D] (an MLM decoder ties its weights to it)."""
        return self._require_model().get_input_embeddings()

    def pooler_module(self) -> nn.Module | None:
        """The encoder's own pooler (BERT: dense + tanh on the [CLS] state; takes hidden states
        [B, L, D] -> [B, D]), what BERT's NSP head reads; None for encoders without one."""
        return getattr(self._require_model(), "pooler", None)

    def require_model(self) -> PreTrainedModel:
        """The transformers encoder (built once a preset has its tokenizer)."""
        return self._require_model()

    def _require_model(self) -> PreTrainedModel:
        if self.model is None:
            raise RuntimeError(
                f"model.preset={self.preset} has no vocabulary yet: call attach_tokenizer(tokenizer) first"
            )
        return self.model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """input_ids, attention_mask, token_type_ids: [B, L] -> EncoderOutput (see class docstring)."""
        model = self._require_model()
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        hidden = model(**kwargs).last_hidden_state
        return EncoderOutput(hidden_states=hidden, attention_mask=attention_mask, pooled=hidden[:, 0])
