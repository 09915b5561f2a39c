"""Word labels -> sub-token labels: hand-checked cases, and through a real fast tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast

from headstart.data.token_alignment import align_word_labels, b_to_i_map, tokenize_and_align_labels

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC"]  # MISC has no I- tag on purpose
O, B_PER, I_PER, B_LOC, I_LOC, B_MISC = range(6)  # noqa: E741 - the tag's own name


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizerFast:
    # "washingtonian" is never seen whole, so it is split into sub-tokens
    corpus = ["george washington lived in virginia", "ian met george", "the lazy dog"] * 4
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        corpus, vocab_size=80, min_frequency=1, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    return BertTokenizerFast(vocab=trainer.get_vocab())


def test_b_to_i_map() -> None:
    assert b_to_i_map(LABELS) == [O, I_PER, I_PER, I_LOC, I_LOC, B_MISC]


def test_first_subtoken_only() -> None:
    # [CLS] george washing ##ton lived [SEP]
    word_ids = [None, 0, 1, 1, 2, None]
    assert align_word_labels(word_ids, [B_PER, I_PER, O]) == [-100, B_PER, I_PER, -100, O, -100]


def test_label_all_tokens_turns_b_into_i() -> None:
    word_ids = [None, 0, 0, 0, 1, 1, 2, 2, None]
    labels = [B_PER, B_LOC, B_MISC]
    expected = [-100, B_PER, I_PER, I_PER, B_LOC, I_LOC, B_MISC, B_MISC, -100]
    assert align_word_labels(word_ids, labels, True, b_to_i_map(LABELS)) == expected
    # without a map the label is copied as is
    assert align_word_labels(word_ids, labels, True) == [-100, B_PER, B_PER, B_PER, B_LOC, B_LOC, B_MISC, B_MISC, -100]


def test_unlabelled_word_stays_ignored_on_all_subtokens() -> None:
    assert align_word_labels([None, 0, 0, None], [-100], True, b_to_i_map(LABELS)) == [-100] * 4


def test_through_fast_tokenizer(tokenizer: BertTokenizerFast) -> None:
    words = [["George", "Washingtonian", "lived", "in", "Virginia"], ["ian", "met", "George"]]
    word_labels = [[B_PER, I_PER, O, O, B_LOC], [B_PER, O, B_PER]]
    out = tokenize_and_align_labels(tokenizer, words, word_labels, LABELS)
    tokens = tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    split = [i for i, w in enumerate(out["word_ids"][0]) if w == 1]
    assert len(split) > 1, tokens  # the test needs a word split into sub-tokens
    labels = out["labels"][0]
    assert labels[split[0]] == I_PER and all(labels[i] == -100 for i in split[1:])
    first_of_word = {}
    for i, w in enumerate(out["word_ids"][0]):
        first_of_word.setdefault(w, i)
    assert [labels[first_of_word[w]] for w in range(5)] == word_labels[0]
    assert labels[0] == -100 and labels[-1] == -100
    assert len(out["labels"][1]) == len(out["input_ids"][1])


def test_label_all_tokens_and_truncation_through_tokenizer(tokenizer: BertTokenizerFast) -> None:
    words = [["Washingtonian", "lived", "in", "Virginia"]]
    out = tokenize_and_align_labels(tokenizer, words, [[B_PER, O, O, B_LOC]], LABELS, label_all_tokens=True)
    word_ids, labels = out["word_ids"][0], out["labels"][0]
    sub = [labels[i] for i, w in enumerate(word_ids) if w == 0]
    assert sub[0] == B_PER and sub[1:] == [I_PER] * (len(sub) - 1) and len(sub) > 1
    short = tokenize_and_align_labels(tokenizer, words, [[B_PER, O, O, B_LOC]], LABELS, max_length=4)
    assert len(short["input_ids"][0]) == 4 and short["labels"][0][-1] == -100
    assert "labels" not in tokenize_and_align_labels(tokenizer, words, None)
