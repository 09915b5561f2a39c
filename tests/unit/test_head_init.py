"""Heads start as transformers' task heads start: weights from normal(0, initializer_range), bias 0.

A freshly initialised head on a pretrained encoder matters most in the first epoch (issue 22);
transformers' ``_init_weights`` draws a ``*For*`` classifier from normal(0, config.initializer_range
= 0.02) with a zero bias. headstart's heads draw from a normal of std 0.02 truncated at +-2 (100
standard deviations: no draw is ever cut), so the two are the same distribution; this test
compares headstart's heads with transformers' own, built from the same config.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification

from headstart.heads.linear import LinearHead
from headstart.heads.span import SpanHead
from headstart.heads.token import TokenClassificationHead

HIDDEN, LABELS = 768, 64  # 49k weights: the std of the draw is known to ~0.3 %


def config(labels: int = LABELS) -> BertConfig:
    return BertConfig(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=12, intermediate_size=64,
                      vocab_size=32, num_labels=labels, initializer_range=0.02)


@pytest.mark.parametrize(("ours", "theirs", "attr"), [
    (lambda: LinearHead(HIDDEN, LABELS), BertForSequenceClassification, "classifier"),
    (lambda: TokenClassificationHead(HIDDEN, LABELS), BertForTokenClassification, "classifier"),
    (lambda: SpanHead(HIDDEN), BertForQuestionAnswering, "qa_outputs"),  # start/end: 2 outputs
])
def test_head_init_is_transformers_init(ours, theirs, attr: str) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    head = ours()
    linear = next(m for m in head.modules() if isinstance(m, torch.nn.Linear))
    reference = getattr(theirs(config(linear.out_features)), attr)
    assert linear.weight.shape == reference.weight.shape
    n = linear.weight.numel()
    for weight in (linear.weight, reference.weight):  # 4 standard errors of each estimate
        assert abs(float(weight.mean())) < 4 * 0.02 / n**0.5
        assert float(weight.std()) == pytest.approx(0.02, rel=4 / (2 * n) ** 0.5)
    assert torch.count_nonzero(linear.bias) == 0 and torch.count_nonzero(reference.bias) == 0
    # same shape of distribution too: the tails of a normal, 1.2 % beyond 2.5 std (a uniform
    # init of the same std has none; one truncated at 2 std has none)
    ours_tail = float((linear.weight.abs() > 0.05).float().mean())
    theirs_tail = float((reference.weight.abs() > 0.05).float().mean())
    assert ours_tail == pytest.approx(theirs_tail, abs=6 * (0.0124 / n) ** 0.5) and ours_tail > 0.006
