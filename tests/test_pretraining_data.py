"""Text pretraining data: token shards cached once, multiprocess tokenizing, streaming, sources, bad input."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cfg
from headstart.data import tokenize_worker
from headstart.data.errors import DataError
from headstart.data.pretraining_text import TextPretrainingDataModule, make_collator, resolve_noise
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.token_shards import BlockDataset, TokenShard, write_shard
from headstart.data.tokenizer_training import train_tokenizer

DOCS = [d["text"] for d in make_grammar_documents(300, seed=11)]
SHARD_FILES = ("tokens.bin", "segments.bin", "docs.bin")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(DOCS, "wordpiece", 200, "bert")


def _corpus(path: Path, docs: list[str]) -> Path:
    """One document per paragraph: its sentences on separate lines, a blank line between documents."""
    path.write_text("\n\n".join(d.replace(" . ", " .\n") for d in docs) + "\n")
    return path


def _data(tmp_path: Path, tokenizer, **kwargs) -> TextPretrainingDataModule:
    settings = dict(noise={"kind": "mlm"}, cache_dir=str(tmp_path / "cache"), tokenize_workers=0, num_workers=0,
                    block_size=64, batch_size=8)
    dm = TextPretrainingDataModule(**{**settings, **kwargs})
    dm.configure({"tokenizer": tokenizer, "max_length": 512})
    return dm


def test_shards_written_once_then_reused_from_cache(tmp_path: Path, tokenizer, monkeypatch, caplog) -> None:
    corpus = _corpus(tmp_path / "train.txt", DOCS)
    first = _data(tmp_path, tokenizer, source="text", path=str(corpus))
    first.setup("fit")
    directory = first.shards["train"].directory
    assert directory.parent == tmp_path / "cache" and (directory / "meta.json").is_file()
    stamps = {name: (directory / name).stat().st_mtime_ns for name in SHARD_FILES}
    assert not list((tmp_path / "cache").glob(".*tmp*")), "temporary directory left behind"

    def no_tokenizing(texts):
        raise AssertionError("tokenized again although the shard is cached")

    monkeypatch.setattr(tokenize_worker, "encode_texts", no_tokenizing)
    caplog.set_level(logging.INFO)
    second = _data(tmp_path, tokenizer, source="text", path=str(corpus))
    second.setup("fit")
    assert second.shards["train"].directory == directory
    assert {name: (directory / name).stat().st_mtime_ns for name in SHARD_FILES} == stamps
    assert "reusing cached token shard" in caplog.text
    assert torch.equal(first.train_set[3]["input_ids"], second.train_set[3]["input_ids"])
    # blocks are cut at load: another block size reuses the same shard
    third = _data(tmp_path, tokenizer, source="text", path=str(corpus), block_size=32)
    third.setup("fit")
    assert third.shards["train"].directory == directory and len(third.train_set) > len(second.train_set)
    # an edited source file is a new key: tokenized again
    _corpus(corpus, DOCS[:-5])
    edited = _data(tmp_path, tokenizer, source="text", path=str(corpus))
    with pytest.raises(AssertionError, match="tokenized again"):
        edited.setup("fit")
    assert not list((tmp_path / "cache").glob(".*tmp*")), "a failed write left a half shard"


def test_multiprocess_tokenizing_gives_identical_shards(tmp_path: Path, tokenizer) -> None:
    corpus = _corpus(tmp_path / "corpus.txt", DOCS)
    shards = {}
    for workers in (0, 2):
        dm = _data(tmp_path / f"w{workers}", tokenizer, source="text", path=str(corpus), tokenize_workers=workers,
                   tokenize_chunk_docs=16, noise={"kind": "mlm", "nsp": True})
        dm.prepare_data()
        shards[workers] = dm.shards["train"].directory
    for name in SHARD_FILES:
        assert (shards[0] / name).read_bytes() == (shards[2] / name).read_bytes(), name
    assert TokenShard(shards[2]).meta["n_segments"] > TokenShard(shards[2]).n_docs  # sentences kept for NSP


def test_blocks_cross_documents_and_match_the_text(tmp_path: Path, tokenizer) -> None:
    dm = _data(tmp_path, tokenizer, synthetic_sizes={"train": 100, "val": 20}, block_size=66)
    dm.setup("fit")
    shard = dm.shards["train"]
    expected = [i for d in make_grammar_documents(100, seed=0) for i in
                tokenizer(d["text"], add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]]
    assert shard.n_tokens == len(expected) and shard.maps["tokens"].dtype == np.uint16
    assert len(dm.train_set) == len(expected) // 64  # train drops the last partial block
    assert dm.train_set[1]["input_ids"].tolist() == expected[64:128]
    assert dm.train_set[1]["doc_id"] == shard.doc_of(64) >= 1
    last = dm.val_set[len(dm.val_set) - 1]["input_ids"]  # validation keeps it
    assert 0 < len(last) <= 64
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (8, 66) and (batch["labels"] != -100).any()


def test_memory_mapped_corpus_streams_under_a_ram_cap(tmp_path: Path, tokenizer) -> None:
    """A corpus of ~2.6 MB of text (a ~1.3 MB shard) is written and read with < 0.5 MB of Python heap."""
    cap = 500_000
    docs = [d["text"] for d in make_grammar_documents(2000, seed=5)]
    folder = tmp_path / "big"
    folder.mkdir()
    with (folder / "train.txt").open("w") as handle:
        for _ in range(10):  # ~2.6 MB, written piece by piece
            handle.write("\n\n".join(docs) + "\n\n")
    (folder / "val.txt").write_text("\n\n".join(docs[:50]))
    assert (folder / "train.txt").stat().st_size > 5 * cap
    dm = _data(tmp_path, tokenizer, source="text", path=str(folder), tokenize_chunk_docs=128, block_size=130)
    tracemalloc.start()
    try:
        dm.prepare_data()  # tokenizing streams: chunk by chunk into the shard files
        _, peak_write = tracemalloc.get_traced_memory()
        shard = dm.shards["train"]
        tracemalloc.reset_peak()
        blocks = BlockDataset(shard, 128, keep_last=False)
        checksum = 0
        for i in range(0, len(blocks), 3):  # touch the whole map
            checksum += int(blocks[i]["input_ids"][0])
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shard_bytes = (shard.directory / "tokens.bin").stat().st_size
    print(f"shard {shard_bytes} bytes, peak heap writing {peak_write}, reading {peak_read}")
    assert shard_bytes > 2 * cap and checksum > 0
    assert peak_write < cap, f"writing held {peak_write} bytes"
    assert peak_read < cap, f"reading held {peak_read} bytes"


def test_pickled_shard_reopens_its_maps(tmp_path: Path, tokenizer) -> None:
    import pickle

    dm = _data(tmp_path, tokenizer, synthetic_sizes={"train": 50, "val": 10})
    dm.setup("fit")
    _ = dm.train_set[0]  # maps open here
    copy = pickle.loads(pickle.dumps(dm.train_set))
    assert copy.shard._maps is None
    assert torch.equal(copy[2]["input_ids"], dm.train_set[2]["input_ids"])


def test_interrupted_write_leaves_no_cache(tmp_path: Path, tokenizer) -> None:
    def docs():
        yield "a.txt:1", "the dog sees the cat ."
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / "cache" / "train-x", docs(), tokenizer, tokenizer.sep_token_id, chunk_docs=1)
    assert list((tmp_path / "cache").iterdir()) == []


# ---- sources ---------------------------------------------------------------------------------
def test_hf_save_to_disk_source(tmp_path: Path, tokenizer) -> None:
    import datasets

    rows = {"train": DOCS[:120] + [""], "validation": DOCS[120:150]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"body": v}) for k, v in rows.items()}).save_to_disk(
        str(tmp_path / "ds"))
    dm = _data(tmp_path, tokenizer, source="hf", hf_name=str(tmp_path / "ds"), text_column="body")
    dm.setup("fit")
    assert dm.shards["train"].n_docs == 120 and dm.shards["val"].n_docs == 30  # the empty row is left out
    first = tokenizer(DOCS[0], add_special_tokens=False)["input_ids"]
    block = dm.train_set[0]["input_ids"].tolist()
    assert len(first) < 62 and block[: len(first) + 1] == first + [tokenizer.sep_token_id]
    bad = _data(tmp_path, tokenizer, source="hf", hf_name=str(tmp_path / "ds"), text_column="text")
    with pytest.raises(DataError, match="no column 'text'"):
        bad.setup("fit")


def test_jsonl_source_and_missing_column(tmp_path: Path, tokenizer) -> None:
    import json

    good = tmp_path / "train.jsonl"
    good.write_text("".join(json.dumps({"content": d}) + "\n" for d in DOCS[:80]))
    dm = _data(tmp_path, tokenizer, source="jsonl", path=str(good), text_column="content")
    dm.setup("fit")
    assert dm.shards["train"].n_docs == 76 and dm.shards["val"].n_docs == 4  # last 5% held out
    bad = tmp_path / "bad" / "train.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"content": DOCS[0]}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: missing column 'content'"):
        _data(tmp_path, tokenizer, source="jsonl", path=str(bad.parent), text_column="content").setup("fit")


def test_bad_text_input_names_file_and_line_or_is_counted(tmp_path: Path, tokenizer) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_bytes(
        b"the dog sees the cat .\nthe cats see the dog .\n\n" * 40 + b"the \xff\xfe dog .\n"
    )
    (folder / "valid.txt").write_text("the king helps the girls .\n\nthe boy finds the birds .\n")
    with pytest.raises(DataError, match=r"train\.txt:121: not valid UTF-8"):
        _data(tmp_path, tokenizer, source="text", path=str(folder), block_size=16).setup("fit")
    dm = _data(tmp_path, tokenizer, source="text", path=str(folder), block_size=16, on_error="skip")
    dm.setup("fit")
    assert dm.shards["train"].meta["n_skipped"] == 1
    skipped = [dm.train_set[i] for i in range(len(dm.train_set)) if not isinstance(dm.train_set[i], dict)]
    batch = dm.collate(skipped + [dm.train_set[0]])
    assert len(batch["_skipped"]) == 1 and "train.txt:121: not valid UTF-8" in batch["_skipped"][0]
    assert batch["input_ids"].shape[0] == 1


def test_empty_file_is_named(tmp_path: Path, tokenizer) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.txt: empty file"):
        _data(tmp_path, tokenizer, source="text", path=str(tmp_path / "empty.txt")).setup("fit")
    # a preset trains its tokenizer on the data first: the same error comes from there
    dm = TextPretrainingDataModule(source="text", path=str(tmp_path / "empty.txt"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"empty\.txt: empty file"):
        dm.configure({"tokenizer": None, "tokenizer_training": {"family": "bert", "vocab_size": 100}})


# ---- model hand-off and configs ----------------------------------------------------------------
def test_preset_tokenizer_info_and_noise_resolution(tmp_path: Path) -> None:
    dm = TextPretrainingDataModule(noise=None, cache_dir=str(tmp_path / "c"), synthetic_sizes={"train": 200, "val": 20},
                                   tokenizer_max_texts=100)
    answer = dm.configure({"tokenizer": None, "tokenizer_training": {"family": "bert", "vocab_size": 300}, "max_length": 64})
    tok = answer["tokenizer"]
    info = dm.info()
    assert set(info) == {"vocab_size", "pad_token_id", "mask_token_id", "special_ids", "noise"}
    assert info["vocab_size"] == len(tok) and info["mask_token_id"] == tok.mask_token_id
    assert info["noise"] == {"kind": "mlm"} and dm.block_size == 64
    assert resolve_noise({"kind": "auto"}, {"tokenizer_training": {"family": "bart"}})["kind"] == "infilling"
    assert resolve_noise({"kind": "auto"}, {"tokenizer_training": {"family": "t5"}})["kind"] == "span_corruption"
    # the trained tokenizer is cached too (training is not deterministic): a second run gets the same one
    again = TextPretrainingDataModule(noise=None, cache_dir=str(tmp_path / "c"), synthetic_sizes={"train": 200, "val": 20},
                                      tokenizer_max_texts=100)
    same = again.configure({"tokenizer": None, "tokenizer_training": {"family": "bert", "vocab_size": 300}, "max_length": 64})
    assert same["tokenizer"].get_vocab() == tok.get_vocab() and same["tokenizer"].mask_token == "[MASK]"
    collator = make_collator({"kind": "mlm", "probability": 0.2}, tok, seed=3, not_a_setting=1)
    assert collator.probability == 0.2 and collator.seed == 3
    with pytest.raises(DataError, match="noise.kind"):
        resolve_noise({"kind": "typo"}, {})


@pytest.mark.parametrize("data", ["pretraining_text", "wikitext103", "bookcorpus_wiki"])
def test_data_configs_compose_with_the_task_noise(tmp_path: Path, data: str) -> None:
    from hydra.utils import instantiate

    cfg = make_cfg(tmp_path, "task=masked_lm", f"data={data}", "task.nsp=true", "task.noise.whole_word=true")
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.noise_cfg["kind"] == "mlm" and dm.noise_cfg["nsp"] is True and dm.noise_cfg["whole_word"] is True
    assert dm.cache_dir == Path(cfg.paths.data_dir) / "token_shards"
    assert dm.source == {"pretraining_text": "synthetic", "wikitext103": "hf", "bookcorpus_wiki": "text"}[data]
