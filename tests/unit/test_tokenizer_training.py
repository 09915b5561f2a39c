"""Tokenizers trained on the fly: per-family special tokens, offsets, word ids, offline save/load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from headstart.data.synthetic.text_corpora import make_grammar_documents, make_qa
from headstart.data.tokenizer_training import train_tokenizer

TEXTS = [s for d in make_grammar_documents(60, seed=0) for s in d["sentences"]] + [
    ex["context"] for ex in make_qa(40, seed=0)
]
SAMPLE = "the dog near the cats sees the old king ."
CASES = [("wordpiece", "bert"), ("bytelevel_bpe", "gpt2"), ("bytelevel_bpe", "bart"), ("unigram", "t5")]
# family -> special token ids (module table), checked by name
IDS = {
    "bert": {"pad_token": 0, "unk_token": 1, "cls_token": 2, "sep_token": 3, "mask_token": 4},
    "gpt2": {"eos_token": 0, "bos_token": 0, "pad_token": 1},
    "bart": {"bos_token": 0, "pad_token": 1, "eos_token": 2, "unk_token": 3, "mask_token": 4},
    "t5": {"pad_token": 0, "eos_token": 1, "unk_token": 2},
}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c[1])
def trained(request: pytest.FixtureRequest) -> tuple[str, PreTrainedTokenizerFast, float]:
    kind, family = request.param
    start = time.perf_counter()
    tok = train_tokenizer(TEXTS, kind, vocab_size=400, family=family)
    return family, tok, time.perf_counter() - start


def test_trains_fast_with_family_special_ids(trained: tuple[str, PreTrainedTokenizerFast, float]) -> None:
    family, tok, seconds = trained
    assert len(TEXTS) >= 300 and seconds < 3.0
    assert 100 < len(tok) <= 400
    for name, want in IDS[family].items():
        assert getattr(tok, f"{name}_id") == want, name
    assert tok.is_fast


def test_encode_decode_and_word_ids(trained: tuple[str, PreTrainedTokenizerFast, float]) -> None:
    family, tok, _ = trained
    enc = tok(SAMPLE)
    decoded = tok.decode(enc["input_ids"], skip_special_tokens=True)
    if family == "bert":  # uncased, and decoding glues punctuation back
        assert decoded.replace(" ", "") == SAMPLE.replace(" ", "")
    else:
        assert decoded == SAMPLE
    assert tok.unk_token_id not in enc["input_ids"] or family == "gpt2"  # gpt2's unk is its eos
    words = [w for w in enc.word_ids() if w is not None]
    assert words == sorted(words) and max(words) == len(SAMPLE.split()) - 1
    ids = enc["input_ids"]
    expected_ends = {"bert": ("cls", "sep"), "bart": ("bos", "eos"), "t5": (None, "eos"), "gpt2": (None, None)}
    first, last = expected_ends[family]
    assert first is None or ids[0] == getattr(tok, f"{first}_token_id")
    assert (last is None and ids[-1] != tok.eos_token_id) or ids[-1] == getattr(tok, f"{last}_token_id")


def test_wordpiece_offsets_and_uncased() -> None:
    tok = train_tokenizer(TEXTS, "wordpiece", vocab_size=200)  # small vocab: forces ## pieces
    text = "Noah Klein lives in Berlin ."
    enc = tok(text, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert any(p.startswith("##") for p in pieces)
    for piece, (start, end) in zip(pieces, enc["offset_mapping"]):
        if piece in tok.all_special_tokens:
            assert (start, end) == (0, 0)
        else:
            assert text[start:end].lower() == piece.removeprefix("##")
    pair = tok("the dog", "the cat")
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_t5_sentinels_take_the_last_ids() -> None:
    tok = train_tokenizer(TEXTS, "unigram", vocab_size=300, extra_ids=10)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    assert tok.convert_tokens_to_ids("<extra_id_9>") == len(tok) - 10
    ids = tok("the <extra_id_0> sees").input_ids
    assert ids.count(len(tok) - 1) == 1 and ids[-1] == tok.eos_token_id


def test_bart_mask_absorbs_preceding_space() -> None:
    tok = train_tokenizer(TEXTS, "bytelevel_bpe", vocab_size=400, family="bart")
    assert tok("the <mask>").input_ids == [0, *tok("the", add_special_tokens=False).input_ids, 4, 2]


def test_gpt2_pads_with_its_own_pad_token() -> None:
    tok = train_tokenizer(TEXTS, "bytelevel_bpe", vocab_size=400)
    batch = tok(["the dog", "the dog sees the cats ."], padding=True)
    assert batch["input_ids"][0][-1] == tok.pad_token_id != tok.eos_token_id
    assert batch["attention_mask"][0][-1] == 0


def test_save_and_reload_offline(trained: tuple[str, PreTrainedTokenizerFast, float], tmp_path: Path) -> None:
    family, tok, _ = trained
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    texts = [SAMPLE, "Anna Berg works for Acme ."]
    assert again(texts, padding=True)["input_ids"] == tok(texts, padding=True)["input_ids"]
    assert again(SAMPLE, "the cat")["input_ids"] == tok(SAMPLE, "the cat")["input_ids"]
    assert again.all_special_tokens == tok.all_special_tokens and len(again) == len(tok)
    assert again.model_max_length == tok.model_max_length
    assert again.model_input_names == tok.model_input_names


def test_kind_family_mismatch_fails() -> None:
    with pytest.raises(ValueError, match="uses wordpiece"):
        train_tokenizer(TEXTS, "unigram", 100, family="bert")
