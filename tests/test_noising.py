"""Denoising noise on hand-made ids: BART infilling + sentence permutation, T5 span corruption."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from headstart.data.errors import Skipped
from headstart.data.noising import (
    InfillingCollator,
    SpanCorruptionCollator,
    full_stop_ids,
    noise_span_to_unique_sentinel,
    random_spans_noise_mask,
    sentence_bounds,
)
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.tokenizer_training import train_tokenizer

TEXTS = [d["text"] + " what ? yes !" for d in make_grammar_documents(300, 0)]


@pytest.fixture(scope="module")
def bart_tok():
    return train_tokenizer(TEXTS, "bytelevel_bpe", 400, "bart")


@pytest.fixture(scope="module")
def t5_tok():
    return train_tokenizer(TEXTS, "unigram", 400, "t5")


def _plain_ids(tok, n: int) -> torch.Tensor:
    """n distinct ordinary ids (no special, no full stop), so spans can be read back exactly."""
    banned = set(tok.all_special_ids) | set(full_stop_ids(tok))
    ids = [i for i in range(len(tok)) if i not in banned][:n]
    assert len(ids) == n
    return torch.tensor(ids)


def _spans(noised: list[int], original: list[int], mask_id: int) -> list[int]:
    """Lengths of the spans each mask token of ``noised`` stands for (original ids all distinct)."""
    lengths, pos = [], 0
    for i, token in enumerate(noised):
        if token != mask_id:
            assert original[pos] == token
            pos += 1
            continue
        following = next((t for t in noised[i + 1 :] if t != mask_id), None)
        end = original.index(following) if following is not None else len(original)
        lengths.append(end - pos)
        pos = end
    assert pos == len(original)
    return lengths


def test_infilling_spans_are_poisson_one_mask_each_and_thirty_percent(bart_tok) -> None:
    collator = InfillingCollator(bart_tok, permute_sentences=False, seed=3)
    block = _plain_ids(bart_tok, 200)
    lengths, zero = [], 0
    for _ in range(60):
        batch = collator([{"input_ids": block, "doc_id": 0}, {"input_ids": block[:50], "doc_id": 1}])
        for row, original in enumerate((block, block[:50])):
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            assert ids[0] == bart_tok.bos_token_id and ids[-1] == bart_tok.eos_token_id  # boundaries kept
            labels = batch["labels"][row][batch["labels"][row] != -100].tolist()
            assert labels == [bart_tok.bos_token_id, *original.tolist(), bart_tok.eos_token_id]
            body = ids[1:-1]
            assert not any(a == b == collator.mask_id for a, b in zip(body, body[1:]))  # masks never touch
            spans = _spans(body, original.tolist(), collator.mask_id)
            assert sum(spans) == round(0.3 * len(original))  # exactly the masking budget
            if len(original) == 200:
                lengths += spans[:-1]  # the last span is trimmed to the budget
                zero += spans[:-1].count(0)
    mean = sum(lengths) / len(lengths)
    assert len(lengths) > 1000
    assert abs(mean - 3.0) < 0.15, mean  # Poisson(3): sd of the mean ~0.05
    assert abs(zero / len(lengths) - math.exp(-3)) < 0.025  # zero-length spans insert a mask


def test_sentence_permutation_keeps_the_sentences(bart_tok) -> None:
    stop = full_stop_ids(bart_tok)[0]
    plain = _plain_ids(bart_tok, 40).tolist()
    sentences = [plain[0:3] + [stop], plain[3:8] + [stop, stop], plain[8:10] + [stop], plain[10:16] + [stop], plain[16:19]]
    block = torch.tensor([t for s in sentences for t in s])
    is_stop = torch.zeros(len(bart_tok), dtype=torch.bool)
    is_stop[stop] = True
    assert [block[a:b].tolist() for a, b in sentence_bounds(block, is_stop)] == sentences  # a run of stops ends one
    collator = InfillingCollator(bart_tok, mask_ratio=0.0, permute_sentences=True, seed=0)
    orders = set()
    for _ in range(30):
        batch = collator([{"input_ids": block, "doc_id": 0}])
        body = batch["input_ids"][0, 1:-1]
        pieces = [tuple(body[a:b].tolist()) for a, b in sentence_bounds(body, is_stop)]
        # the last sentence has no stop: moved inside, it merges with the next one; compare tokens
        assert Counter(body.tolist()) == Counter(block.tolist())
        assert sorted(body.tolist()) == sorted(block.tolist())
        orders.add(tuple(body.tolist()))
        assert batch["labels"][0, 1:-1].tolist() == block.tolist()  # labels stay in order
        starts = {s[0] for s in sentences}
        assert {p[0] for p in pieces} <= starts  # every piece still begins a sentence
    assert len(orders) > 5


def test_infilling_is_reproducible_and_handles_skips_and_options(bart_tok) -> None:
    block = _plain_ids(bart_tok, 64)
    samples = [{"input_ids": block, "doc_id": 0}, Skipped("corpus.txt:3", "not UTF-8")]
    a = InfillingCollator(bart_tok, seed=7)(samples)
    b = InfillingCollator(bart_tok, seed=7)(samples)
    c = InfillingCollator(bart_tok, seed=8)(samples)
    assert torch.equal(a["input_ids"], b["input_ids"]) and not torch.equal(a["input_ids"], c["input_ids"])
    assert a["_skipped"] == ["corpus.txt:3: not UTF-8"] and a["input_ids"].shape[0] == 1
    no_masks = InfillingCollator(bart_tok, random_ratio=1.0, permute_sentences=False)([{"input_ids": block, "doc_id": 0}])
    assert bart_tok.mask_token_id not in no_masks["input_ids"].tolist()[0]
    inserted = InfillingCollator(bart_tok, mask_ratio=0.0, insert_ratio=0.1, permute_sentences=False)(samples[:1])
    body = inserted["input_ids"][0, 1:-1]
    assert len(body) == 64 + math.ceil(6.4) and body[body != bart_tok.mask_token_id].tolist() == block.tolist()
    assert InfillingCollator.special_tokens_per_block == 2 and SpanCorruptionCollator.special_tokens_per_block == 1
    with pytest.raises(ValueError, match="mask_ratio"):
        InfillingCollator(bart_tok, mask_ratio=1.5)


def test_t5_sentinel_layout_matches_t5_on_a_fixed_mask(t5_tok) -> None:
    collator = SpanCorruptionCollator(t5_tok)
    x = [t5_tok.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(3)]
    eos = t5_tok.eos_token_id
    tokens = torch.arange(10, 20)
    mask = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=torch.bool)
    inputs, targets = collator.corrupt(tokens, mask)
    assert inputs.tolist() == [10, 11, x[0], 14, 15, 16, x[1], 18, x[2], eos]
    assert targets.tolist() == [x[0], 12, 13, x[1], 17, x[2], 19, eos]
    # "The <X0> walks in <X1> park" / "<X0> cute dog <X1> the <X2>" (transformers' T5 docs example)
    tokens = torch.arange(7)
    mask = torch.tensor([0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    inputs, targets = collator.corrupt(tokens, mask)
    assert inputs.tolist() == [0, x[0], 3, 4, x[1], 6, eos]
    assert targets.tolist() == [x[0], 1, 2, x[1], 5, x[2], eos]
    # T5 numbers sentinels down from the last id: <extra_id_0> is the tokenizer's last token
    assert x[0] == len(t5_tok) - 1 and x[1] == len(t5_tok) - 2
    assert noise_span_to_unique_sentinel(torch.arange(3), torch.zeros(3, dtype=torch.bool), torch.tensor(x)).tolist() == [0, 1, 2]


def _merge(inputs: list[int], targets: list[int], sentinels: set[int], eos: int) -> list[int]:
    """Put the target spans back in place of the input sentinels."""
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1]:
        if t in sentinels:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs[:-1]:
        out += spans[t] if t in sentinels else [t]
    return out


def test_t5_noise_density_span_length_and_round_trip(t5_tok) -> None:
    g = torch.Generator().manual_seed(0)
    for length in (1, 2, 7, 100, 113):
        mask = random_spans_noise_mask(length, 0.15, g, 3.0)
        assert len(mask) == length
        if length >= 2:
            noise = min(max(round(length * 0.15), 1), length - 1)
            assert int(mask.sum()) == noise and not mask[0] and mask[-1]  # non-noise first, noise last
            starts = int((mask[1:] & ~mask[:-1]).sum())
            assert starts == max(round(noise / 3.0), 1)
    collator = SpanCorruptionCollator(t5_tok, noise_density=0.15, mean_span_length=3.0, seed=1)
    block = _plain_ids(t5_tok, 50).repeat(4)  # the merge needs no distinct ids
    sentinels = set(collator.sentinels.tolist())
    noise_tokens = spans = 0
    for _ in range(40):
        batch = collator([{"input_ids": block, "doc_id": 0}, {"input_ids": block[:37], "doc_id": 1}])
        for row, original in enumerate((block, block[:37])):
            inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            targets = batch["labels"][row][batch["labels"][row] != -100].tolist()
            assert inputs[-1] == targets[-1] == t5_tok.eos_token_id
            assert _merge(inputs, targets, sentinels, t5_tok.eos_token_id) == original.tolist()
            if len(original) == 200:
                n_spans = sum(t in sentinels for t in inputs)
                spans += n_spans
                noise_tokens += len(targets) - 1 - n_spans
    assert noise_tokens / (40 * 200) == pytest.approx(0.15, abs=0.005)
    assert noise_tokens / spans == pytest.approx(3.0, abs=0.1)
    with pytest.raises(ValueError, match="sentinels"):
        collator.corrupt(torch.arange(300), torch.tensor([0, 1] * 150, dtype=torch.bool))  # 150 spans, 100 sentinels


def test_span_corruption_refuses_a_tokenizer_without_sentinels(bart_tok) -> None:
    with pytest.raises(ValueError, match="extra_id"):
        SpanCorruptionCollator(bart_tok)
