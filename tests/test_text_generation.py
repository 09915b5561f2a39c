"""Text generation (GPT-2): backbone parity, packing, perplexity, train/eval/predict, bad input, learning."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import make_cfg
from headstart.backbones.hf_lm import HFLanguageModel
from headstart.data.errors import DataError
from headstart.data.synthetic.text_corpora import make_grammar_documents
from headstart.data.text_lm import TextLMDataModule
from headstart.data.tokenizer_training import train_tokenizer
from headstart.eval import evaluate
from headstart.losses.lm import LMLoss, lm_loss_sum
from headstart.metrics.generation import TokenPerplexity
from headstart.predict import predict
from headstart.train import train

SHORT = [
    "task=text_generation",
    "model.preset=tiny",
    "model.tokenizer_training.vocab_size=300",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.block_size=32",
    "data.synthetic_sizes={train: 40, val: 10}",
    "task.generation.max_new_tokens=4",
]
TINY_GPT2 = {"model_type": "gpt2", "n_positions": 64, "n_embd": 32, "n_layer": 1, "n_head": 2}


def _tokenizer(n: int = 60):
    texts = [d["text"] for d in make_grammar_documents(n, 0)]
    return train_tokenizer(texts, "bytelevel_bpe", 300, "gpt2"), texts


def test_backbone_loss_equals_transformers_loss(tmp_path: Path) -> None:
    tokenizer, texts = _tokenizer()
    backbone = HFLanguageModel("none", "causal", preset="tiny", presets={"tiny": TINY_GPT2}, tokenizer_save_dir=str(tmp_path))
    backbone.attach(tokenizer=tokenizer)
    backbone.eval()
    batch = tokenizer(texts[:3], padding=True, truncation=True, max_length=40, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    ref = backbone.model(**batch, labels=labels).loss
    weight, bias = backbone.lm_head()
    ours = LMLoss(shift=True, chunk_size=16)(backbone(batch["input_ids"], batch["attention_mask"]), weight, labels, bias)
    torch.testing.assert_close(ours["loss"], ref, rtol=0, atol=1e-5)
    assert backbone.model.lm_head.weight is backbone.model.transformer.wte.weight  # tied head
    assert (tmp_path / "tokenizer.json").is_file()
    assert backbone.rebuild_kwargs()["tokenizer_dir"] == str(tmp_path)


def test_packing_puts_eos_between_documents_and_scores_every_eval_token() -> None:
    tokenizer, _ = _tokenizer()
    dm = TextLMDataModule(block_size=16, synthetic_sizes={"train": 30, "val": 7}, num_workers=0)
    dm.configure({"tokenizer": tokenizer, "max_length": 64})
    dm.setup("fit")
    docs = [t for _, t in dm.docs["val"]]
    stream = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = [dm.val_set[i] for i in range(len(dm.val_set))]
    got = torch.cat([b["input_ids"][b["attention_mask"] == 1] for b in blocks]).tolist()
    assert got == stream  # every token, in order, EOS after each document
    last = blocks[-1]
    assert (last["labels"][last["attention_mask"] == 0] == -100).all()
    assert all(len(dm.train_set[i]["input_ids"]) == 16 for i in range(len(dm.train_set)))
    assert all(bool(dm.train_set[i]["attention_mask"].all()) for i in range(len(dm.train_set)))  # no padding


def test_perplexity_is_exp_of_mean_over_all_tokens_not_mean_of_batches() -> None:
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(4, 9, 8, generator=g), torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 30, (4, 9), generator=g)
    labels[3, 2:] = -100  # a short last batch
    metric = TokenPerplexity()
    for rows in (slice(0, 3), slice(3, 4)):
        metric.update(*lm_loss_sum(hidden[rows], weight, labels[rows], shift=True))
    shifted = F.pad(labels[:, 1:], (0, 1), value=-100)
    whole = F.cross_entropy((hidden @ weight.T).reshape(-1, 30), shifted.reshape(-1))
    assert math.isclose(metric.compute().item(), math.exp(whole.item()), rel_tol=1e-5)


def test_train_eval_predict_from_checkpoint(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path / "run", *SHORT))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("val/perplexity", "val/loss", "best_checkpoint", "fit_seconds", "train_samples_per_second", "peak_memory_mb"):
        assert key in written, key
    assert 1 < written["val/perplexity"] < 400 and written["global_step"] == 3
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples").glob("*.jsonl").__next__().read_text().splitlines()]
    assert {s["strategy"] for s in samples} == {"greedy", "top_k", "top_p", "beam"} and len(samples) == 12

    ckpt = results["best_checkpoint"]
    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", "trainer.limit_val_batches=2",
                                config_name="eval"))
    assert metrics["val/perplexity"] == pytest.approx(results["val/perplexity"], rel=1e-5)

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "the dog"}\n{"prompt": "the kings near the cat"}\n{"prompt": ""}\n')
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={prompts}",
                               config_name="predict"))
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [r["input"] for r in lines] == ["the dog", "the kings near the cat", ""]
    assert all(isinstance(r["generation"], str) for r in lines) and len(records) == 3


def test_text_files_split_by_paragraph(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"para {i} line a\npara {i} line b\n\n" for i in range(20)))
    tokenizer, _ = _tokenizer()
    dm = TextLMDataModule(source="text", path=str(corpus), val_fraction=0.1, block_size=8, num_workers=0)
    dm.configure({"tokenizer": tokenizer})
    dm.setup("fit")
    assert len(dm.docs["train"]) == 18 and len(dm.docs["val"]) == 2
    assert dm.docs["val"][0] == (f"{corpus}:55", "para 18 line a\npara 18 line b")  # the last 10%, in order


def test_bad_input_names_file_and_line_or_is_skipped(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "the dog sees the cat ."}\n{"body": "no text column"}\n' + '{"text": "the cats see the dog ."}\n' * 30)
    overrides = [*SHORT, "data.source=jsonl", f"data.path={data}", "test=false"]
    with pytest.raises(DataError, match=r"train.jsonl:2: missing column 'text'"):
        train(make_cfg(tmp_path / "raise", *overrides))
    bad_utf8 = tmp_path / "bad.txt"
    bad_utf8.write_bytes(b"fine line\n\xff\xfe broken\n")
    dm = TextLMDataModule(source="text", path=str(bad_utf8), num_workers=0)
    with pytest.raises(DataError, match=r"bad.txt:2: not valid UTF-8"):
        dm.configure({"tokenizer": None, "tokenizer_training": {"kind": "bytelevel_bpe", "vocab_size": 300}})
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip", "data.val_fraction=0.2"))
    assert results["data_skipped"] == 1


@pytest.mark.slow
def test_tiny_gpt2_learns_the_grammar(tmp_path: Path) -> None:
    start = time.perf_counter()
    results = train(make_cfg(tmp_path, "experiment=synthetic/text_generation"))
    minutes = (time.perf_counter() - start) / 60
    print(f"val/perplexity={results['val/perplexity']:.3f} in {minutes:.1f} min")
    assert results["val/perplexity"] < 3.5
