"""HFTextEncoder (tiny presets, checkpoint round-trip) and the token / span heads (parity with transformers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertForQuestionAnswering, BertForTokenClassification, BertTokenizerFast

from headstart.backbones.base import EncoderOutput, HubUnreachableError
from headstart.backbones.hf_text import HFTextEncoder
from headstart.heads.span import SpanHead
from headstart.heads.token import TokenClassificationHead

CORPUS = ["the quick brown fox jumps over the lazy dog", "george washington lived in virginia", "who lived where"]
PRESETS = {
    "tiny": {
        "model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 64,
    },
    "tiny_distilbert": {
        "model_type": "distilbert", "dim": 64, "n_layers": 2, "n_heads": 2, "hidden_dim": 128,
        "max_position_embeddings": 64,
    },
    "tiny_roberta": {
        "model_type": "roberta", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 70, "type_vocab_size": 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizerFast:
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        CORPUS * 4, vocab_size=120, min_frequency=1, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    return BertTokenizerFast(vocab=trainer.get_vocab())


def _encoder(tokenizer: BertTokenizerFast, preset: str = "tiny", **kwargs) -> HFTextEncoder:
    torch.manual_seed(0)
    encoder = HFTextEncoder(checkpoint="unused", preset=preset, presets=PRESETS, **kwargs)
    encoder.attach_tokenizer(tokenizer)
    return encoder.eval()


def _batch(tokenizer: BertTokenizerFast) -> dict[str, torch.Tensor]:
    return dict(tokenizer(["who lived where", "the fox"], ["george washington", "lazy dog jumps"],
                          padding=True, return_tensors="pt"))  # fmt: skip


def test_tiny_preset_builds_offline_and_shapes(tokenizer: BertTokenizerFast) -> None:
    encoder = HFTextEncoder(checkpoint="unused", preset="tiny", presets=PRESETS)
    assert encoder.hidden_size == 64
    with pytest.raises(RuntimeError, match="attach_tokenizer"):
        encoder(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    encoder.attach_tokenizer(tokenizer)
    assert encoder.model.config.vocab_size == len(tokenizer)
    batch = _batch(tokenizer)
    out = encoder(**batch)
    assert isinstance(out, EncoderOutput)
    B, L = batch["input_ids"].shape
    assert out.hidden_states.shape == (B, L, 64)
    assert torch.equal(out.pooled, out.hidden_states[:, 0])
    assert out.attention_mask is batch["attention_mask"]
    assert encoder.data_spec()["tokenizer"] is tokenizer


def test_unknown_preset_and_missing_checkpoint_are_one_line() -> None:
    with pytest.raises(ValueError, match="tiny"):
        HFTextEncoder(checkpoint="x", preset="huge", presets=PRESETS)
    with pytest.raises(HubUnreachableError, match="model.preset=tiny"):
        HFTextEncoder(checkpoint="/nonexistent/headstart-checkpoint")


def test_save_and_reload_round_trips(tokenizer: BertTokenizerFast, tmp_path: Path) -> None:
    encoder = _encoder(tokenizer)
    encoder.save_pretrained(str(tmp_path))
    loaded = HFTextEncoder(checkpoint=str(tmp_path)).eval()
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab()
    batch = _batch(loaded.tokenizer)
    assert torch.equal(batch["input_ids"], _batch(tokenizer)["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).hidden_states, encoder(**batch).hidden_states)
    # pretrained=False: same architecture from the checkpoint's config, fresh weights
    fresh = HFTextEncoder(checkpoint=str(tmp_path), pretrained=False, config={"hidden_dropout_prob": 0.0})
    assert fresh.hidden_size == 64 and fresh.model.config.hidden_dropout_prob == 0.0
    weight = fresh.model.embeddings.word_embeddings.weight
    assert not torch.equal(weight, loaded.model.embeddings.word_embeddings.weight)


def test_token_type_ids_used_by_bert_ignored_by_distilbert_and_roberta(tokenizer: BertTokenizerFast) -> None:
    batch = _batch(tokenizer)
    no_types = {k: v for k, v in batch.items() if k != "token_type_ids"}
    assert batch["token_type_ids"].max() == 1
    with torch.no_grad():
        bert = _encoder(tokenizer)
        assert not torch.allclose(bert(**batch).hidden_states, bert(**no_types).hidden_states)
        for preset in ("tiny_distilbert", "tiny_roberta"):
            encoder = _encoder(tokenizer, preset)
            torch.testing.assert_close(encoder(**batch).hidden_states, encoder(**no_types).hidden_states)
    assert _encoder(tokenizer, "tiny_distilbert").hidden_size == 64


def test_freeze_and_gradient_checkpointing(tokenizer: BertTokenizerFast) -> None:
    frozen = _encoder(tokenizer, freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    ckpt = _encoder(tokenizer, gradient_checkpointing=True).train()
    plain = _encoder(tokenizer).train()
    assert getattr(ckpt.model, "is_activation_checkpointing", None) or ckpt.model.is_gradient_checkpointing
    batch = _batch(tokenizer)
    for enc in (ckpt, plain):
        torch.manual_seed(1)
        enc(**batch).hidden_states.sum().backward()
    grad_c = ckpt.model.embeddings.word_embeddings.weight.grad
    torch.testing.assert_close(grad_c, plain.model.embeddings.word_embeddings.weight.grad, rtol=1e-4, atol=1e-5)


def test_token_head_matches_bert_for_token_classification(tokenizer: BertTokenizerFast) -> None:
    encoder = _encoder(tokenizer)
    head = TokenClassificationHead(encoder.hidden_size, num_classes=5).eval()
    reference = BertForTokenClassification(encoder.model.config.__class__(**{
        **encoder.model.config.to_dict(), "num_labels": 5})).eval()  # fmt: skip
    assert not reference.bert.load_state_dict(encoder.model.state_dict(), strict=False).missing_keys
    reference.classifier.load_state_dict(head.classifier.state_dict())
    batch = _batch(tokenizer)
    with torch.no_grad():
        ours = head(encoder(**batch).hidden_states)
        torch.testing.assert_close(ours, reference(**batch).logits, atol=1e-5, rtol=1e-5)
    assert ours.shape == (*batch["input_ids"].shape, 5)


def test_span_head_matches_bert_for_question_answering(tokenizer: BertTokenizerFast) -> None:
    encoder = _encoder(tokenizer)
    head = SpanHead(encoder.hidden_size).eval()
    reference = BertForQuestionAnswering(encoder.model.config).eval()
    assert not reference.bert.load_state_dict(encoder.model.state_dict(), strict=False).missing_keys
    reference.qa_outputs.load_state_dict(head.qa_outputs.state_dict())
    batch = _batch(tokenizer)
    with torch.no_grad():
        start, end = head(encoder(**batch).hidden_states)
        expected = reference(**batch)
    torch.testing.assert_close(start, expected.start_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(end, expected.end_logits, atol=1e-5, rtol=1e-5)
    assert start.shape == batch["input_ids"].shape
