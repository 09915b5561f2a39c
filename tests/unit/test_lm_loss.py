"""Chunked LM loss: parity with transformers' own losses, gradients, memory bound; packing helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.models.bart.modeling_bart import shift_tokens_right as hf_shift_tokens_right

from headstart.data.packing import iter_blocks, labels_from_padded, pack_documents, shift_tokens_right
from headstart.losses.lm import LMLoss, linear_cross_entropy_sum, lm_loss_sum, perplexity, shift_labels_left

V, D = 97, 32


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, attention mask, labels [3, 10] with right padding set to -100 in labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return ids, mask, ids.masked_fill(mask == 0, -100)


def test_gpt2_parity() -> None:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=32, n_embd=D, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    ids, mask, labels = _batch()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    hidden = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    out = LMLoss(shift=True, chunk_size=7)(hidden, model.lm_head.weight, labels)
    torch.testing.assert_close(out["loss"], ref, rtol=0, atol=1e-5)
    # 3 rows of 10, 7 and 4 real tokens: one target fewer per row after the shift
    assert out["num_tokens"].item() == 9 + 6 + 3


def test_bart_parity_with_final_logits_bias() -> None:
    torch.manual_seed(0)
    cfg = BartConfig(
        vocab_size=V, d_model=D, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
    )
    model = BartForConditionalGeneration(cfg).eval()
    model.final_logits_bias.normal_()  # zeros by default, which would not test the bias path
    ids, mask, labels = _batch()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    dec_in = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    hidden = model.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in).last_hidden_state
    out = LMLoss(shift=False, chunk_size=4)(hidden, model.lm_head.weight, labels, model.final_logits_bias[0])
    torch.testing.assert_close(out["loss"], ref, rtol=0, atol=1e-5)


def test_t5_parity_with_caller_rescaling() -> None:
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=V, d_model=D, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    model = T5ForConditionalGeneration(cfg).eval()
    ids, mask, labels = _batch()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    enc = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    dec_in = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
    hidden = model.decoder(input_ids=dec_in, encoder_hidden_states=enc, encoder_attention_mask=mask).last_hidden_state
    assert cfg.scale_decoder_outputs  # tied embeddings: the caller rescales
    loss = LMLoss(shift=False, chunk_size=5)
    out = loss(hidden * cfg.d_model**-0.5, model.lm_head.weight, labels)
    torch.testing.assert_close(out["loss"], ref, rtol=0, atol=1e-5)
    assert (loss(hidden, model.lm_head.weight, labels)["loss"] - ref).abs() > 1e-3  # rescaling matters


def _leaves(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 10, D, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(V, D, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(V, generator=g, dtype=dtype).requires_grad_()
    return hidden, weight, bias


@pytest.mark.parametrize("chunk_size", [1, 7, 30, 1000])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_grads_match_unchunked(chunk_size: int, smoothing: float) -> None:
    _, _, labels = _batch()
    hidden, weight, bias = _leaves()
    ref = F.cross_entropy(F.linear(hidden, weight, bias).reshape(-1, V), labels.reshape(-1), label_smoothing=smoothing)
    ref_grads = torch.autograd.grad(ref, (hidden, weight, bias))
    out = LMLoss(shift=False, chunk_size=chunk_size, label_smoothing=smoothing)(hidden, weight, labels, bias)
    grads = torch.autograd.grad(out["loss"] * 3.0, (hidden, weight, bias))  # grad_output != 1 too
    torch.testing.assert_close(out["loss"], ref, rtol=0, atol=1e-12)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, 3.0 * want, rtol=0, atol=1e-9)


def test_label_smoothing_matches_torch_fp32() -> None:
    _, _, labels = _batch()
    hidden, weight, bias = (t.detach().float().requires_grad_() for t in _leaves())
    ref = F.cross_entropy(F.linear(hidden, weight, bias).reshape(-1, V), labels.reshape(-1), label_smoothing=0.2)
    out = LMLoss(shift=False, chunk_size=8, label_smoothing=0.2)(hidden, weight, labels, bias)
    torch.testing.assert_close(out["loss"], ref, rtol=0, atol=1e-5)
    (g_ref,) = torch.autograd.grad(ref, hidden)
    (g_out,) = torch.autograd.grad(out["loss"], hidden)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=1e-6)


def test_frozen_head_and_no_grad() -> None:
    _, _, labels = _batch()
    hidden, weight, _ = _leaves()
    weight.requires_grad_(False)
    out = LMLoss(shift=True, chunk_size=4)(hidden, weight, labels)
    (g,) = torch.autograd.grad(out["loss"], hidden)
    assert g.shape == hidden.shape and g.abs().sum() > 0
    with torch.no_grad():
        again = LMLoss(shift=True, chunk_size=4)(hidden, weight, labels)
    assert not again["loss"].requires_grad
    torch.testing.assert_close(again["loss"], out["loss"].detach())


class _LargestVocabBuffer(TorchDispatchMode):
    """Records the largest tensor with a vocab-sized last dim made by any op."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.largest = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            # [D, V] is the transposed head weight inside F.linear, not logits
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab and t.shape[-2] != D:
                self.largest = max(self.largest, t.numel())
        return out


def test_only_one_chunk_of_logits_exists() -> None:
    _, _, labels = _batch()
    hidden, weight, bias = _leaves(torch.float32)
    with _LargestVocabBuffer(V) as spy:
        out = LMLoss(shift=True, chunk_size=6)(hidden, weight, labels, bias)
        out["loss"].backward()
    assert 0 < spy.largest <= 6 * V < 30 * V  # never the full [B*T, V] logits
    with _LargestVocabBuffer(V) as spy:
        F.linear(hidden, weight, bias).sum()
    assert spy.largest == 30 * V  # the spy does see a full logits tensor


def test_bf16_autocast_close_to_fp32() -> None:
    _, _, labels = _batch()
    hidden, weight, bias = (t.detach().float().requires_grad_() for t in _leaves())
    ref = LMLoss(shift=True)(hidden, weight, labels, bias)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = LMLoss(shift=True, chunk_size=8)(hidden, weight, labels, bias)["loss"]
    out.backward()
    assert out.dtype == torch.float32 and abs(out.item() - ref.item()) < 0.05 * ref.item()
    assert hidden.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


def test_perplexity_over_split_equals_exp_token_mean() -> None:
    _, _, labels = _batch()
    hidden, weight, bias = (t.detach() for t in _leaves())
    sums = [lm_loss_sum(hidden[i : i + 1], weight, labels[i : i + 1], bias, shift=True, chunk_size=3) for i in range(3)]
    total, count = sum(s for s, _ in sums), sum(c for _, c in sums)
    whole = F.cross_entropy(F.linear(hidden, weight, bias).reshape(-1, V), shift_labels_left(labels).reshape(-1))
    assert int(count) == 18
    assert math.isclose(perplexity(total, count), math.exp(whole.item()), rel_tol=1e-5)
    assert math.isnan(perplexity(0.0, 0))


def test_all_ignored_gives_zero_not_nan() -> None:
    hidden, weight, _ = _leaves()
    out = LMLoss(shift=False)(hidden, weight, torch.full((3, 10), -100))
    assert out["loss"].item() == 0.0 and out["num_tokens"].item() == 0


def test_bad_shapes_fail_clearly() -> None:
    hidden, weight, _ = _leaves()
    with pytest.raises(ValueError, match="disagree"):
        linear_cross_entropy_sum(hidden, weight, torch.zeros(3, 9, dtype=torch.long))


# ---- packing and seq2seq helpers -------------------------------------------------------------

EOS = 0


def test_pack_drop_keep_pad() -> None:
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]  # stream: 1 2 3 0 4 5 0 6 7 8 9 0 (12 tokens)
    assert list(iter_blocks(docs, 5, EOS)) == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8]]
    assert list(iter_blocks(docs, 5, EOS, "keep")) == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8], [9, 0]]
    packed = pack_documents(docs, 5, EOS, "pad", pad_id=99)
    assert packed["input_ids"][-1] == [9, 0, 99, 99, 99]
    assert packed["labels"][-1] == [9, 0, -100, -100, -100]
    assert packed["attention_mask"][-1] == [1, 1, 0, 0, 0]
    assert packed["labels"][:2] == packed["input_ids"][:2]  # the shift happens in the loss
    assert pack_documents(docs, 4, EOS, "pad")["attention_mask"] == [[1] * 4] * 3  # no remainder


def test_pack_without_eos_and_long_document() -> None:
    assert list(iter_blocks([list(range(1, 8))], 3, None)) == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError):
        list(iter_blocks([[1]], 0, EOS))


def test_shift_tokens_right_matches_transformers() -> None:
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    ours = shift_tokens_right(labels, pad_id=1, decoder_start_id=2)
    assert ours.tolist() == [[2, 5, 6, 7], [2, 8, 2, 1]]
    torch.testing.assert_close(ours, hf_shift_tokens_right(labels, 1, 2))
    assert labels.tolist()[1] == [8, 2, -100, -100]  # input untouched
    assert labels_from_padded(torch.tensor([[4, 1, 0, 0]]), pad_id=0).tolist() == [[4, 1, -100, -100]]
