"""FastDropout (ops/dropout.py): torch's dropout distribution from cheaper draws, and the callback
that uses it for CPU fits only."""

from __future__ import annotations

import lightning
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from headstart.callbacks.fast_dropout import FastCPUDropout
from headstart.ops.dropout import LANES, FastDropout, fast_dropout, restore_dropout, swap_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scale_match_torch_dropout(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    out = fast_dropout(x, p)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 0.002  # binomial std at 1M draws: <= 0.0005
    kept = out[out != 0]
    cut = round(p * LANES)
    assert torch.all(kept == LANES / (LANES - cut))  # exact inverse of the (rounded) keep rate
    assert abs(out.double().mean().item() - 1.0) < 0.005  # unbiased, as F.dropout


def test_neighbouring_lanes_are_independent() -> None:
    """Four 16-bit lanes come from one 64-bit draw: adjacent elements must still drop independently."""
    torch.manual_seed(1)
    p = 0.3
    dropped = fast_dropout(torch.ones(4_000_000), p) == 0
    words = dropped.view(-1, 4)
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:
        both = (words[:, a] & words[:, b]).double().mean().item()
        assert abs(both - p * p) < 0.002
    assert abs((dropped[:-1] & dropped[1:]).double().mean().item() - p * p) < 0.002


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    out = fast_dropout(x, 0.2)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    keep = out.detach() != 0
    scale = LANES / (LANES - round(0.2 * LANES))
    torch.testing.assert_close(x.grad, weight * keep * scale)
    torch.testing.assert_close(out.detach(), x.detach() * keep * scale)


def test_eval_zero_p_and_unrepresentable_p_follow_torch() -> None:
    x = torch.randn(8, 8)
    assert fast_dropout(x, 0.5, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), F.dropout(x, 1.0))  # rounding would keep some: torch's
    layer = FastDropout(0.5).eval()
    assert torch.equal(layer(x), x)


def test_seeded_draws_repeat_and_differ_across_seeds() -> None:
    x = torch.ones(10_000)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.1)
    torch.manual_seed(3)
    b = fast_dropout(x, 0.1)
    torch.manual_seed(4)
    c = fast_dropout(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_swap_and_restore_keep_the_model_as_built() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Sequential(nn.Dropout(0.2), nn.Dropout(0.0)),
                          nn.Dropout(0.3, inplace=True))
    before = list(model.modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    swapped = swap_dropout(model)
    assert [type(model[1]), type(model[2][0]), type(model[2][1]), type(model[3])] == [FastDropout, FastDropout, nn.Dropout, nn.Dropout]
    assert model[1].p == 0.1 and model[2][0].p == 0.2 and isinstance(model[1], nn.Dropout)
    model.eval()
    restore_dropout(swapped)
    assert list(model.modules()) == before and not model[1].training  # originals back, mode followed
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class DropoutModule(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))
        self.seen: list[type] = []

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.seen.append(type(self.net[1]))
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_on_cpu(module: lightning.LightningModule, steps: int, root) -> None:  # noqa: ANN001
    """``steps`` optimizer steps of batch 4 on CPU with the FastCPUDropout callback."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4 * steps, 4)), batch_size=4)
    trainer = lightning.Trainer(accelerator="cpu", max_steps=steps, callbacks=[FastCPUDropout()], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, default_root_dir=root)
    trainer.fit(module, data)


def test_callback_swaps_for_the_cpu_fit_only(tmp_path) -> None:  # noqa: ANN001
    module = DropoutModule()
    fit_on_cpu(module, steps=3, root=tmp_path)
    assert module.seen == [FastDropout] * 3
    assert type(module.net[1]) is nn.Dropout  # restored when the fit ended


# ---- the attention path (transformers models) --------------------------------------------------

def _qkv(q_len: int = 5, kv_len: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    return torch.randn(2, 3, q_len, 8), torch.randn(2, 3, kv_len, 8), torch.randn(2, 3, kv_len, 8)


@pytest.mark.parametrize("case", ["none", "float", "bool", "causal", "cross"])
def test_attention_math_equals_sdpa_without_dropout(case: str) -> None:
    from headstart.ops.dropout import attention_math

    q, k, v = _qkv(5, 7 if case == "cross" else 5)
    mask = None
    if case == "float":
        mask = torch.zeros(2, 1, 5, 5)
        mask[0, :, :, 3:] = torch.finfo(torch.float32).min
    elif case == "bool":
        mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
        mask[1, :, :, 2:] = False
        mask[1, :, 4, :] = False  # a query that may attend nowhere: zeros, as SDPA's math path
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=case == "causal")
    got = attention_math(q, k, v, mask, 8**-0.5, case == "causal", lambda p: p)
    torch.testing.assert_close(got, expected)


def _tiny(kind: str) -> nn.Module:
    from transformers import BartConfig, BartModel, BertConfig, BertModel, GPT2Config, GPT2Model

    torch.manual_seed(0)
    if kind == "bert":
        return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3))
    if kind == "gpt2":
        return GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.3))
    return BartModel(BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, dropout=0.0,
                                activation_dropout=0.0, attention_dropout=0.3, max_position_embeddings=32))


@pytest.mark.parametrize("kind", ["bert", "gpt2", "bart"])
def test_fast_attention_path_sees_the_masks_transformers_passes(kind: str, monkeypatch) -> None:  # noqa: ANN001
    """With its dropout replaced by the identity, the training-mode path gives the eval-mode
    (sdpa, no dropout) output: padding, causal and cross-attention masks arrive as SDPA's would."""
    import headstart.ops.dropout as ops

    model = _tiny(kind)
    ids = torch.randint(3, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if kind == "bart":
        inputs["decoder_input_ids"] = ids[:, :6]
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
    changed = ops.use_fast_sdpa(model)
    assert changed and model.config._attn_implementation == ops.FAST_SDPA
    calls = []
    monkeypatch.setattr(ops, "fast_dropout", lambda p, rate, training=True: calls.append(rate) or p)
    model.train()
    with torch.no_grad():
        got = model(**inputs).last_hidden_state
    assert calls and set(calls) == {0.3}  # the fast path ran, with the model's attention dropout
    keep = mask.bool() if kind != "bart" else torch.ones(3, 6, dtype=torch.bool)  # padded rows are don't-care
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)
    ops.restore_attention(changed)
    assert model.config._attn_implementation == "sdpa"


def test_fast_attention_trains_with_dropout() -> None:
    import headstart.ops.dropout as ops

    model = _tiny("bert")
    ops.use_fast_sdpa(model)
    model.train()
    ids = torch.randint(3, 50, (2, 7))
    torch.manual_seed(9)
    a = model(input_ids=ids).last_hidden_state
    torch.manual_seed(9)
    b = model(input_ids=ids).last_hidden_state
    c = model(input_ids=ids).last_hidden_state
    assert torch.equal(a, b) and not torch.equal(a, c)  # seeded, and dropout is on
    a.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


class BertModule(DropoutModule):
    def __init__(self) -> None:
        super().__init__()
        self.bert = _tiny("bert")
        self.attention: list[str] = []

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.attention.append(self.bert.config._attn_implementation)
        return super().training_step(batch, batch_idx)


def test_callback_switches_attention_for_the_fit_only(tmp_path) -> None:  # noqa: ANN001
    from headstart.ops.dropout import FAST_SDPA

    module = BertModule()
    fit_on_cpu(module, steps=2, root=tmp_path)
    assert module.attention == [FAST_SDPA] * 2 and module.bert.config._attn_implementation == "sdpa"
