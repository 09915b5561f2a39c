"""Summarization and translation (BART, T5): parity, metrics, freeze schedule, sources, bad input, learning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF
from torch import nn

from conftest import make_cfg
from headstart.backbones.hf_lm import HFLanguageModel
from headstart.callbacks.freeze_schedule import FreezeSchedule
from headstart.data.errors import DataError
from headstart.data.seq2seq import Seq2SeqDataModule
from headstart.data.synthetic.text_corpora import make_translation
from headstart.data.tokenizer_training import train_tokenizer
from headstart.losses.lm import LMLoss
from headstart.metrics.generation import Rouge, SacreBleu, SacreChrf, split_sentences
from headstart.predict import predict
from headstart.run.build import build
from headstart.train import train

SHORT = [
    "model.preset=tiny",
    "model.tokenizer_training.vocab_size=300",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.synthetic_sizes={train: 24, val: 8}",
    "task.generation.max_new_tokens=6",
    "task.generation.num_beams=2",
    "task.generate_val_batches=1",
]
TINY = {
    "t5": {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 2,
           "decoder_start_token_id": 0},
    "bart": {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64},
}
FAMILY = {"t5": ("unigram", "t5"), "bart": ("bytelevel_bpe", "bart")}


def _backbone(family: str, tmp_path: Path, **kwargs) -> HFLanguageModel:
    texts = [x for d in make_translation(100, 0) for x in (d["source"], d["target"])]
    kind, fam = FAMILY[family]
    backbone = HFLanguageModel("none", "seq2seq", preset="tiny", presets={"tiny": TINY[family]},
                               tokenizer_save_dir=str(tmp_path / family), **kwargs)
    backbone.attach(tokenizer=train_tokenizer(texts, kind, 300, fam))
    return backbone


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_backbone_loss_equals_transformers_loss(tmp_path: Path, family: str) -> None:
    torch.manual_seed(0)
    backbone = _backbone(family, tmp_path).eval()
    if family == "bart":
        backbone.model.final_logits_bias.normal_()  # zeros by default: make the bias path count
    tok = backbone.tokenizer
    pairs = make_translation(3, 1)
    batch = tok([p["source"] for p in pairs], padding=True, return_tensors="pt")
    labels = tok(text_target=[p["target"] for p in pairs], padding=True, return_tensors="pt")["input_ids"]
    labels = labels.masked_fill(labels == tok.pad_token_id, -100)
    ref = backbone.model(**batch, labels=labels).loss
    weight, bias = backbone.lm_head()
    ours = LMLoss(shift=False, chunk_size=5)(backbone(batch["input_ids"], batch["attention_mask"], labels), weight, labels, bias)
    torch.testing.assert_close(ours["loss"], ref, rtol=0, atol=1e-5)
    assert backbone.model.get_output_embeddings().weight is backbone.model.get_input_embeddings().weight


def test_metrics_accumulate_corpus_statistics_like_sacrebleu() -> None:
    hyps = ["the cat sat on the mat", "a dog ran", "hello world there", "ko vano bara"]
    refs = ["the cat is on the mat", "the dog ran away", "hello there world", "ko vano bara"]
    bleu, chrf = SacreBleu(), SacreChrf()
    for part in (slice(0, 1), slice(1, 4)):
        bleu.update(hyps[part], refs[part])
        chrf.update(hyps[part], refs[part])
    assert bleu.compute().item() == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-6)
    assert chrf.compute().item() == pytest.approx(CHRF().corpus_score(hyps, [refs]).score, abs=1e-6)


def test_rouge_lsum_splits_sentences_without_nltk_data() -> None:
    from rouge_score import rouge_scorer

    assert split_sentences("One cat. Two dogs! Three?  Four") == "One cat.\nTwo dogs!\nThree?\nFour"
    pred, ref = "the cat sat. the dog ran.", "the dog ran. the cat sat."
    metric = Rouge("rougeLsum")
    metric.update([pred], [ref])
    want = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True).score(
        split_sentences(ref), split_sentences(pred))["rougeLsum"].fmeasure
    assert metric.compute().item() == pytest.approx(100 * want, abs=1e-4) and want == pytest.approx(1.0)
    rouge_l = Rouge("rougeL")
    rouge_l.update([pred], [ref])
    assert rouge_l.compute().item() < 100 * want  # one LCS over the whole text misses the reorder


@pytest.mark.parametrize("task,model", [("summarization", "bart"), ("summarization", "t5"), ("translation", "bart")])
def test_each_task_and_model_trains(tmp_path: Path, task: str, model: str) -> None:
    train(make_cfg(tmp_path, f"task={task}", f"model={model}", *SHORT))
    written = json.loads((tmp_path / "metrics.json").read_text())
    keys = ["val/rouge1", "val/rouge2", "val/rougeL", "val/rougeLsum"] if task == "summarization" else ["val/bleu", "val/chrf"]
    for key in [*keys, "val/loss", "best_checkpoint", "fit_seconds", "train_samples_per_second", "peak_memory_mb"]:
        assert key in written, key
    assert all(0 <= written[k] <= 100 for k in keys)


def test_translation_t5_eval_and_predict_from_checkpoint(tmp_path: Path) -> None:
    results = train(make_cfg(tmp_path / "run", "task=translation", "model=t5", *SHORT))
    assert {"val/bleu", "val/chrf"} <= set(results)
    ckpt = results["best_checkpoint"]
    tokenizer_dir = tmp_path / "run" / "tokenizer"
    assert (tokenizer_dir / "tokenizer.json").is_file()
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["headstart"]
    assert meta["model_rebuild"]["tokenizer_dir"] == str(tokenizer_dir)
    assert meta["config"]["data"]["source_prefix"] == "translate English to German: "

    inputs = tmp_path / "sentences.txt"
    inputs.write_text("the dog sees the cat\nthe old king helps the small child\nthe bird finds the fish\n")
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={inputs}", "data.eval_batch_size=2",
                               config_name="predict"))
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [r["input"] for r in lines] == inputs.read_text().splitlines()  # input order kept
    assert all(isinstance(r["translation"], str) for r in lines) and len(records) == 3


def test_eval_batches_are_length_sorted_and_carry_their_index(tmp_path: Path) -> None:
    dm = Seq2SeqDataModule(synthetic_task="translation", synthetic_sizes={"train": 40, "val": 20}, batch_size=4, num_workers=0)
    backbone = _backbone("t5", tmp_path)
    dm.configure(backbone.data_spec())
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    lengths = [int(b["attention_mask"].sum(1).max()) for b in batches]
    assert lengths == sorted(lengths, reverse=True)
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(indices) == list(range(20))
    first = batches[0]
    assert (first["labels"] == -100).any() or first["labels"].shape[1] == min(len(dm.val_set[i]["labels"]) for i in first["index"].tolist())


def test_freeze_schedule_freezes_and_unfreezes_exactly_what_it_says() -> None:
    model = nn.ModuleDict({"encoder": nn.Linear(2, 2), "decoder": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    schedule = FreezeSchedule([{"at_step": 3, "unfreeze": ["*"]}, {"at_step": 0, "freeze": ["*"], "unfreeze": ["head.*"]}])
    trainable = lambda: sorted(n for n, p in model.named_parameters() if p.requires_grad)  # noqa: E731
    schedule.apply_until(model, 0)
    assert trainable() == ["head.bias", "head.weight"]
    schedule.apply_until(model, 2)
    assert trainable() == ["head.bias", "head.weight"]
    schedule.apply_until(model, 3)
    assert len(trainable()) == 6
    with pytest.raises(ValueError, match="pattern 'nowhere.\\*' matches no parameter"):
        FreezeSchedule([{"at_step": 0, "freeze": ["nowhere.*"]}])._check_patterns(model)


def test_bart_new_source_encoder_trains_alone_then_everything(tmp_path: Path) -> None:
    overrides = ["experiment=translation_bart_new_encoder", *SHORT, "data.source=synthetic", "freeze_steps=3",
                 "trainer.max_steps=3", "test=false"]
    cfg = make_cfg(tmp_path, *overrides)
    lightning.seed_everything(cfg.seed, workers=True)
    initial = {k: v.clone() for k, v in build(cfg).task.state_dict().items()}
    results = train(make_cfg(tmp_path, *overrides))
    final = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    changed = {k for k, v in final.items() if k in initial and not torch.equal(v, initial[k])}
    assert any(k.startswith("backbone.source_encoder.") for k in changed)
    assert "backbone.model.model.encoder.embed_positions.weight" in changed
    frozen = [k for k in initial if k.startswith(("backbone.model.model.decoder.", "backbone.model.model.shared"))]
    assert frozen and not changed & set(frozen)  # pretrained part untouched for freeze_steps steps


def test_parallel_files_read_aligned_lines(tmp_path: Path) -> None:
    for split, n in (("train", 12), ("val", 4)):
        pairs = make_translation(n, len(split))
        (tmp_path / f"{split}.en").write_text("".join(p["source"] + "\n" for p in pairs))
        (tmp_path / f"{split}.de").write_text("".join(p["target"] + "\n" for p in pairs))
    dm = Seq2SeqDataModule(source="parallel", path=str(tmp_path), source_lang="en", target_lang="de", num_workers=0)
    pairs = dm._load_pairs()
    assert len(pairs["train"]) == 12 and len(pairs["val"]) == 4
    assert pairs["val"][0] == (f"{tmp_path / 'val.en'}:1", tuple(make_translation(4, 3)[0].values()))


@pytest.mark.parametrize(
    "files,error",
    [
        ({"train.en": "a b\nc d\ne f\n", "train.de": "x y\nz w\n"}, r"train.en:3: no matching line in .*train.de"),
        ({"train.en": "a b\n\ne f\n", "train.de": "x y\nz w\nq r\n"}, r"train.en:2: empty source line"),
        ({"data.jsonl": '{"source": "a b", "target": "x"}\n{"source": "c d", "target": "  "}\n'}, r"data.jsonl:2: empty 'target'"),
        ({"data.jsonl": '{"source": "a b", "target": "x"}\n{"src": "c d", "target": "y"}\n'}, r"data.jsonl:2: missing column 'source'"),
        ({"data.csv": "source,target\na b,x y\nc d\n"}, r"data.csv:3: 1 fields, header has 2"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, files: dict[str, str], error: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    source = {"en": "parallel", "jsonl": "jsonl", "csv": "csv"}[next(iter(files)).split(".")[-1]]
    dm = Seq2SeqDataModule(source=source, path=str(tmp_path), source_lang="en", target_lang="de", num_workers=0)
    with pytest.raises(DataError, match=error):
        dm._load_pairs()


def test_bad_pairs_are_counted_under_skip(tmp_path: Path) -> None:
    pairs = make_translation(30, 5)
    lines = [json.dumps({"source": p["source"], "target": p["target"]}) for p in pairs]
    lines[3] = json.dumps({"source": pairs[3]["source"], "target": ""})
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    overrides = [*SHORT, "task=translation", "data.source=jsonl", f"data.path={data}", "data.val_fraction=0.2",
                 "trainer.max_steps=16", "test=false"]
    results = train(make_cfg(tmp_path / "skip", *overrides, "data.on_error=skip"))
    assert results["data_skipped"] == 1


@pytest.mark.slow
def test_tiny_t5_learns_the_toy_language(tmp_path: Path) -> None:
    start = time.perf_counter()
    results = train(make_cfg(tmp_path, "experiment=synthetic/translation_t5"))
    print(f"val/bleu={results['val/bleu']:.1f} in {(time.perf_counter() - start) / 60:.1f} min")
    assert results["val/bleu"] >= 50


@pytest.mark.slow
def test_tiny_bart_learns_to_summarize(tmp_path: Path) -> None:
    start = time.perf_counter()
    results = train(make_cfg(tmp_path, "experiment=synthetic/summarization_bart"))
    print(f"val/rougeL={results['val/rougeL']:.1f} in {(time.perf_counter() - start) / 60:.1f} min")
    assert results["val/rougeL"] >= 50


def test_media_is_a_table_of_sources_generations_and_references(tmp_path: Path) -> None:
    import wandb

    from headstart.tasks.seq2seq import Seq2SeqTask

    task = Seq2SeqTask(_backbone("t5", tmp_path), LMLoss(shift=False), {"bleu": SacreBleu()}, optimizer=torch.optim.AdamW)
    batch = {"sources": ["a", "b", "c"], "targets": ["x", "y", "z"]}
    media = task.media(batch, {"predictions": ["x", "q", "z"]}, max_items=2)
    table = media["val/generations"]
    assert isinstance(table, wandb.Table) and table.columns == ["epoch", "source", "generated", "reference"]
    assert [row[1:] for row in table.data] == [["a", "x", "x"], ["b", "q", "y"]]
    with pytest.raises(ValueError, match="generate_val_batches=0"):
        Seq2SeqTask(task.backbone, LMLoss(shift=False), {"bleu": SacreBleu()}, optimizer=torch.optim.AdamW,
                    generate_val_batches=0)


def test_rouge_metrics_stay_separate_when_they_start_equal(tmp_path: Path) -> None:
    from headstart.tasks.seq2seq import Seq2SeqTask

    metrics = {k: Rouge(k) for k in ("rouge1", "rouge2", "rougeL")}
    task = Seq2SeqTask(_backbone("t5", tmp_path), LMLoss(shift=False), metrics, optimizer=torch.optim.AdamW)
    task.val_metrics.update(["zzz"], ["a b c"])  # all zero: equal states
    task.val_metrics.update(["c a b"], ["a b c"])
    scores = {k: round(v.item(), 2) for k, v in task.val_metrics.compute().items()}
    assert scores["val/rouge1"] > scores["val/rougeL"] > scores["val/rouge2"] > 0
