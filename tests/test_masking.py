"""MLM masking statistics (selection rate, 80/10/10, specials, whole words) and BERT NSP pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headstart.data.errors import Skipped
from headstart.data.masking import MLMCollator, continuation_table, mask_tokens, special_ids
from headstart.data.pretraining_text import TextPretrainingDataModule
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.tokenizer_training import train_tokenizer

TEXTS = [d["text"] for d in make_grammar_documents(400, seed=3)]


@pytest.fixture(scope="module")
def tokenizer():
    # a tiny vocabulary, so many words split into several word pieces (whole-word masking)
    return train_tokenizer(TEXTS, "wordpiece", 60, "bert")


@pytest.fixture(scope="module")
def blocks(tokenizer) -> list[dict]:
    ids = tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    flat = [i for doc in ids for i in doc + [tokenizer.sep_token_id]]
    # blocks of varied length, so the batch is padded
    out, start, sizes = [], 0, [60, 45, 30, 60, 52]
    while start + 60 < len(flat):
        size = sizes[len(out) % len(sizes)]
        out.append({"input_ids": torch.tensor(flat[start : start + size]), "doc_id": 0})
        start += size
    return out


def _draws(collator: MLMCollator, blocks: list[dict], batch: int = 32):
    for start in range(0, len(blocks) - batch + 1, batch):
        yield collator(blocks[start : start + batch])


def test_selection_rate_and_80_10_10(tokenizer, blocks) -> None:
    collator = MLMCollator(tokenizer, seed=1)
    specials = torch.tensor(sorted(special_ids(tokenizer)))
    eligible = selected = masked = randomized = kept = 0
    for _ in range(3):
        for batch in _draws(collator, blocks):
            original = torch.where(batch["labels"] == -100, batch["input_ids"], batch["labels"])
            candidates = (batch["attention_mask"] == 1) & ~torch.isin(original, specials)
            chosen = batch["labels"] != -100
            assert not (chosen & ~candidates).any(), "a special or padding position was selected"
            # specials and padding are never changed
            assert torch.equal(batch["input_ids"][~candidates], original[~candidates])
            eligible += int(candidates.sum())
            selected += int(chosen.sum())
            now = batch["input_ids"][chosen]
            masked += int((now == tokenizer.mask_token_id).sum())
            kept += int((now == batch["labels"][chosen]).sum())
            randomized += int(((now != tokenizer.mask_token_id) & (now != batch["labels"][chosen])).sum())
            assert not torch.isin(now[now != tokenizer.mask_token_id], specials).any(), "random token was special"
    assert eligible > 50_000
    assert abs(selected / eligible - 0.15) < 0.01
    # a random replacement equal to the original counts as kept (1/V of 10%: within tolerance)
    assert abs(masked / selected - 0.8) < 0.015
    assert abs(randomized / selected - 0.1) < 0.015
    assert abs(kept / selected - 0.1) < 0.015


def test_batch_layout_and_padding(tokenizer, blocks) -> None:
    batch = MLMCollator(tokenizer)(blocks[:5] + [Skipped("f.txt:3", "not valid UTF-8")])
    assert batch["_skipped"] == ["f.txt:3: not valid UTF-8"]
    lengths = [len(b["input_ids"]) + 2 for b in blocks[:5]]
    assert batch["input_ids"].shape == (5, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, n in zip(batch["input_ids"], lengths):
        assert row[0] == tokenizer.cls_token_id and row[n - 1] == tokenizer.sep_token_id
        assert (row[n:] == tokenizer.pad_token_id).all()
    assert (batch["token_type_ids"] == 0).all()
    assert batch["num_tokens"] == sum(lengths) and batch["num_padded"] == 5 * max(lengths) - sum(lengths)
    padded = MLMCollator(tokenizer, pad_to_multiple_of=8)(blocks[:5])
    assert padded["input_ids"].shape[1] % 8 == 0


def test_whole_word_masking_keeps_words_whole(tokenizer, blocks) -> None:
    collator = MLMCollator(tokenizer, whole_word=True, seed=2)
    table = continuation_table(tokenizer)
    specials = special_ids(tokenizer)
    pieces = [t for t in tokenizer.get_vocab() if t.startswith("##")]
    assert pieces and table[tokenizer.convert_tokens_to_ids(pieces[0])]
    multi_piece_words = selected = eligible = 0
    for batch in _draws(collator, blocks):
        original = torch.where(batch["labels"] == -100, batch["input_ids"], batch["labels"])
        chosen = (batch["labels"] != -100).tolist()
        for row, picks in zip(original.tolist(), chosen):
            word: list[bool] = []
            previous_special = True
            for token, pick in zip(row + [tokenizer.cls_token_id], picks + [False]):
                # a word starts at a non-continuation piece, or after a special token (block start)
                if (not table[token] or previous_special) and word:  # a word ended: all of it or none
                    assert all(word) or not any(word), "whole-word masking split a word"
                    multi_piece_words += len(word) > 1
                    word = []
                word.append(pick)
                previous_special = token in specials
        eligible += int(((batch["attention_mask"] == 1) & ~torch.isin(original, torch.tensor(sorted(special_ids(tokenizer))))).sum())
        selected += int((batch["labels"] != -100).sum())
    assert multi_piece_words > 100
    assert abs(selected / eligible - 0.15) < 0.02  # per word, still ~15% of the tokens


def test_pure_function_is_reproducible_and_respects_special_mask() -> None:
    ids = torch.randint(10, 100, (8, 50))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, :3] = True
    kwargs = dict(mask_token_id=4, random_ids=torch.arange(10, 100), probability=0.5)
    a = mask_tokens(ids, special, generator=torch.Generator().manual_seed(0), **kwargs)
    b = mask_tokens(ids, special, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[1][:, :3] == -100).all() and torch.equal(a[0][:, :3], ids[:, :3])
    # labels hold the original ids where selected
    chosen = a[1] != -100
    assert torch.equal(a[1][chosen], ids[chosen])
    with pytest.raises(ValueError, match="> 1"):
        mask_tokens(ids, special, mask_fraction=0.9, random_fraction=0.2, mask_token_id=4, random_ids=torch.arange(10, 100))


def test_collator_seeding(tokenizer, blocks) -> None:
    one, two = MLMCollator(tokenizer, seed=5), MLMCollator(tokenizer, seed=5)
    assert torch.equal(one(blocks[:8])["input_ids"], two(blocks[:8])["input_ids"])
    assert not torch.equal(one(blocks[:8])["input_ids"], MLMCollator(tokenizer, seed=6)(blocks[:8])["input_ids"])
    fixed = MLMCollator(tokenizer, seed=5, fixed_per_batch=True)  # evaluation: same masks every epoch
    assert torch.equal(fixed(blocks[:8])["labels"], fixed(blocks[:8])["labels"])


# ---- NSP ---------------------------------------------------------------------------------------
def _nsp_data(tmp_path: Path, tokenizer, block_size: int, n: int = 600) -> TextPretrainingDataModule:
    dm = TextPretrainingDataModule(
        noise={"kind": "mlm", "nsp": True}, block_size=block_size, synthetic_sizes={"train": n, "val": 50},
        synthetic_sentences=(2, 8), cache_dir=str(tmp_path / "cache"), tokenize_workers=0, num_workers=0, seed=4,
    )
    dm.configure({"tokenizer": tokenizer, "max_length": 512})
    dm.setup("fit")
    return dm


def test_nsp_pairs(tmp_path: Path, tokenizer) -> None:
    dm = _nsp_data(tmp_path, tokenizer, block_size=512)
    data, shard = dm.train_set, dm.shards["train"]
    assert dm.collate.special_tokens_per_block == 3
    items = [data[i] for i in range(len(data.chunks))]
    rate = sum(it["is_next"] for it in items) / len(items)
    assert abs(rate - 0.5) < 0.06, rate
    tokens = shard.maps["tokens"]
    for it in items[:300]:
        lo, hi = shard.doc_segments(it["doc_id"])
        start, _ = shard.segment(lo)
        last, length = shard.segment(hi - 1)
        doc = tokens[start : last + length].tolist()
        a, b = it["input_ids"].tolist(), it["pair_ids"].tolist()
        joined = a + b
        follows = any(doc[k : k + len(joined)] == joined for k in range(len(doc) - len(joined) + 1))
        assert len(a) and len(b)
        if it["is_next"]:
            assert follows, "B does not follow A in its document"
        else:
            assert not follows
    assert sum(it["is_next"] for it in items[:300]) > 100


def test_nsp_pairs_fit_block_and_segments_are_typed(tmp_path: Path, tokenizer) -> None:
    block = 24  # shorter than most documents: chunks split and pairs get truncated
    dm = _nsp_data(tmp_path, tokenizer, block_size=block, n=200)
    items = [dm.train_set[i] for i in range(len(dm.train_set.chunks))]
    assert all(len(it["input_ids"]) + len(it["pair_ids"]) + 3 <= block for it in items)
    assert max(len(it["input_ids"]) + len(it["pair_ids"]) for it in items) == block - 3
    batch = dm.collate(items[:16])
    assert batch["input_ids"].shape[1] <= block
    for row, it in enumerate(items[:16]):
        a, b = len(it["input_ids"]), len(it["pair_ids"])
        expected = [0] * (a + 2) + [1] * (b + 1)
        assert batch["token_type_ids"][row, : len(expected)].tolist() == expected
        assert (batch["token_type_ids"][row, len(expected) :] == 0).all()
        ids = batch["input_ids"][row]
        assert ids[a + 1] == tokenizer.sep_token_id and ids[a + b + 2] == tokenizer.sep_token_id
        # transformers' convention: 0 = B continues A, 1 = B is random
        assert batch["next_sentence_label"][row] == 1 - it["is_next"]
