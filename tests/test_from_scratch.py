"""model.pretrained=false: every model family builds at any size from its config, offline, random init.

The default checkpoints are hub ids the (offline) tests cannot reach: their config falls back to
the family's default config class with the ``model.config`` size overrides (one log line), and
the overrides must show in the built model. A reachable checkpoint keeps its own architecture.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate

from conftest import make_cfg
from headstart.backbones.hf_text import HFTextEncoder
from headstart.data.tokenizer_training import train_tokenizer
from headstart.run.build import MODEL_META_KEYS, without

TEXTS = [f"the {a} {n} sees the {b} . it is {a} ." for a in ("red", "old", "big") for n in ("dog", "cat") for b in ("tree", "car")]
BERT_SMALL = "{num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}"
SEQ2SEQ_SMALL = ("{d_model: 32, encoder_layers: 1, decoder_layers: 1, encoder_attention_heads: 2,"
                 " decoder_attention_heads: 2, encoder_ffn_dim: 64, decoder_ffn_dim: 64}")

# family -> (task, model.config overrides, (config attribute, expected value), tokenizer family or None)
FAMILIES: dict[str, tuple[str, str, tuple[str, Any], str | None]] = {
    "bert": ("text_classification", BERT_SMALL, ("num_hidden_layers", 1), "bert"),
    "distilbert": ("text_classification", "{n_layers: 1, dim: 32, n_heads: 2, hidden_dim: 64}", ("n_layers", 1), "bert"),
    "gpt2": ("text_generation", "{n_layer: 1, n_embd: 32, n_head: 2}", ("n_embd", 32), "gpt2"),
    "bart": ("summarization", SEQ2SEQ_SMALL, ("d_model", 32), "bart"),
    "t5": ("summarization", "{d_model: 32, d_kv: 8, d_ff: 64, num_layers: 1, num_decoder_layers: 1, num_heads: 2}",
           ("num_layers", 1), "t5"),
    "vit": ("image_classification", "{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
            "intermediate_size: 64, image_size: 32, patch_size: 8}", ("hidden_size", 32), None),
    "convnext": ("image_classification", "{hidden_sizes: [8, 16, 32, 64], depths: [1, 1, 1, 1]}", ("hidden_sizes", [8, 16, 32, 64]), None),
    "detr": ("object_detection", "{d_model: 32, encoder_layers: 1, decoder_layers: 1, encoder_attention_heads: 2, "
             "decoder_attention_heads: 2, encoder_ffn_dim: 64, decoder_ffn_dim: 64, num_queries: 10, "
             "backbone_config: {model_type: resnet, embedding_size: 8, hidden_sizes: [16, 32], depths: [1, 1], "
             "layer_type: basic, out_features: [stage2]}}", ("d_model", 32), None),
    "mask2former": ("segmentation", "{backbone_config: {model_type: swin, image_size: 64, patch_size: 4, embed_dim: 12, "
                    "depths: [1, 1, 1, 1], num_heads: [1, 1, 1, 1], window_size: 4, out_features: [stage1, stage2, stage3, stage4]}, "
                    "hidden_dim: 32, feature_size: 32, mask_feature_size: 32, encoder_layers: 1, encoder_feedforward_dim: 64, "
                    "decoder_layers: 2, dim_feedforward: 64, num_attention_heads: 2, num_queries: 8}", ("hidden_dim", 32), None),
    "segformer": ("segmentation", "{hidden_sizes: [8, 16, 32, 48], depths: [1, 1, 1, 1], num_attention_heads: [1, 1, 2, 2], "
                  "decoder_hidden_size: 32}", ("hidden_sizes", [8, 16, 32, 48]), None),
    "glpn": ("depth_estimation", "{hidden_sizes: [8, 16, 32, 64], depths: [1, 1, 1, 1], num_attention_heads: [1, 1, 2, 4], "
             "decoder_hidden_size: 16}", ("hidden_sizes", [8, 16, 32, 64]), None),
    "wav2vec2": ("audio_classification", "{num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, "
                 "conv_dim: [32, 32, 32, 32, 32, 32, 32], num_conv_pos_embeddings: 16, num_conv_pos_embedding_groups: 4}",
                 ("hidden_size", 32), None),
}


def hf_model(backbone: Any) -> Any:
    """The transformers model inside a backbone (text backbones build theirs once a tokenizer is attached)."""
    return backbone.model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pretrained_false_builds_offline_with_size_overrides(tmp_path: Path, family: str, caplog: pytest.LogCaptureFixture) -> None:
    task, overrides, (key, expected), tokenizer_family = FAMILIES[family]
    cfg = make_cfg(
        tmp_path, f"task={task}", f"model={family}", "model.pretrained=false", f"++model.config={overrides}"
    )  # + : the keys are new to config: {}
    assert cfg.model.preset is None  # the hub checkpoint, unreachable here
    with caplog.at_level(logging.WARNING, logger="headstart.backbones.from_scratch"):
        backbone = instantiate(without(cfg.model, MODEL_META_KEYS), _convert_="all")
    assert f"config of '{cfg.model.checkpoint}' unreachable" in caplog.text
    if tokenizer_family is not None:  # like a preset: the data trains a tokenizer, the model is built then
        kind = {"bert": "wordpiece", "gpt2": "bytelevel_bpe", "bart": "bytelevel_bpe", "t5": "unigram"}[tokenizer_family]
        tokenizer = train_tokenizer(TEXTS, kind, vocab_size=300, family=tokenizer_family, extra_ids=10)
        backbone.attach(tokenizer=tokenizer)
    if family == "wav2vec2":  # torchaudio model: the HF config was converted
        assert backbone.hidden_size == 32 and len(backbone.model.encoder.transformer.layers) == 1
        return
    config = hf_model(backbone).config
    assert getattr(config, key) == expected, (key, getattr(config, key))
    assert sum(p.numel() for p in backbone.parameters()) < 5_000_000  # the small size, not the default's
    if tokenizer_family is not None:
        assert config.vocab_size == len(tokenizer)


def test_pretrained_false_with_a_reachable_checkpoint_keeps_its_architecture(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(TEXTS, "wordpiece", vocab_size=120)
    tiny = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    saved = HFTextEncoder(preset="tiny", presets={"tiny": tiny})
    saved.attach_tokenizer(tokenizer)
    saved.save_pretrained(str(tmp_path))
    torch.manual_seed(123)
    scratch = HFTextEncoder(checkpoint=str(tmp_path), pretrained=False, config={"num_hidden_layers": 1})
    assert scratch.model.config.hidden_size == 32 and scratch.model.config.num_hidden_layers == 1
    assert len(scratch.tokenizer) == len(tokenizer)  # the checkpoint's own tokenizer
    new = scratch.model.state_dict()["embeddings.word_embeddings.weight"]
    assert not torch.equal(new, saved.model.state_dict()["embeddings.word_embeddings.weight"])  # random init
    loaded = HFTextEncoder(checkpoint=str(tmp_path))
    assert torch.equal(
        loaded.model.state_dict()["embeddings.word_embeddings.weight"], saved.model.state_dict()["embeddings.word_embeddings.weight"]
    )
