"""Masked LM (+ NSP): parity with transformers' pretraining models, export, smoke, learning, round trip."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertForPreTraining, DistilBertForMaskedLM

from conftest import make_cfg
from headstart.backbones.hf_text import HFTextEncoder
from headstart.data.tokenizer_training import train_tokenizer
from headstart.heads.mlm import MLMHead, NSPHead
from headstart.losses.mlm import MaskedLMLoss
from headstart.tasks.masked_lm import MaskedLMTask, pretraining_model

TEXTS = [
    f"the {a} {n} near the {b} sings and the {n} walks"
    for a in ("small", "old", "red")
    for n in ("dog", "cat", "king")
    for b in ("tree", "house")
]
TINY = {
    "bert": {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "distilbert": {
        "model_type": "distilbert",
        "dim": 32,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dim": 64,
        "max_position_embeddings": 64,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}


def tiny_task(model_type: str, nsp: bool = False) -> MaskedLMTask:
    tokenizer = train_tokenizer(TEXTS, "wordpiece", vocab_size=120)
    backbone = HFTextEncoder(preset="tiny", presets={"tiny": TINY[model_type]})
    backbone.attach_tokenizer(tokenizer)
    return MaskedLMTask(
        backbone,
        mlm_head=partial(MLMHead),
        loss=MaskedLMLoss(),
        optimizer=partial(torch.optim.AdamW),
        nsp=nsp,
        nsp_head=partial(NSPHead),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        special_ids=tokenizer.all_special_ids,
    )


def hand_batch(task: MaskedLMTask, nsp: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Sentence pairs, ~15% positions selected (some masked, some random, some kept), padding."""
    tokenizer = task.backbone.tokenizer
    enc = tokenizer(TEXTS[:6], TEXTS[6:12], padding=True, return_tensors="pt")
    gen = torch.Generator().manual_seed(seed)
    special = torch.isin(enc["input_ids"], torch.tensor(tokenizer.all_special_ids))
    selected = (torch.rand(enc["input_ids"].shape, generator=gen) < 0.15) & ~special
    selected[:, 1] = True  # every row has at least one target
    labels = torch.where(selected, enc["input_ids"], -100)
    ids = enc["input_ids"].clone()
    roll = torch.rand(ids.shape, generator=gen)
    ids[selected & (roll < 0.8)] = tokenizer.mask_token_id
    randoms = selected & (roll >= 0.8) & (roll < 0.9)
    ids[randoms] = torch.randint(5, len(tokenizer), ids.shape, generator=gen)[randoms]
    batch = {"input_ids": ids, "attention_mask": enc["attention_mask"], "token_type_ids": enc["token_type_ids"], "labels": labels}
    if nsp:
        batch["next_sentence_label"] = torch.tensor([0, 1, 0, 1, 1, 0])
    return batch


def randomize(module: torch.nn.Module) -> None:
    """Non-trivial values everywhere (biases and LayerNorms start at 0/1)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("nsp", [True, False])
def test_loss_equals_bert_for_pretraining(nsp: bool) -> None:
    task = tiny_task("bert", nsp=nsp).eval()
    randomize(task)
    batch = hand_batch(task, nsp)
    ours = task._loss(task(batch), batch)
    reference = pretraining_model(task.backbone.model, task.mlm_head, task.nsp_head).eval()
    if not nsp:  # the reference always has an NSP head: compare its MLM term
        logits = reference(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).prediction_logits
        expected = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), batch["labels"].view(-1))
    else:
        expected = reference(**batch).loss
        assert ours["nsp_loss"] > 0
    assert ours["loss"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert (batch["labels"] != -100).sum() < batch["attention_mask"].sum() / 3  # the CE is over few positions


def test_exported_bert_loads_in_transformers_with_its_heads(tmp_path: Path) -> None:
    task = tiny_task("bert", nsp=True).eval()
    randomize(task)
    batch = hand_batch(task, nsp=True)
    task.export_pretrained(tmp_path)
    reloaded = BertForPreTraining.from_pretrained(tmp_path).eval()
    assert reloaded(**batch).loss.item() == pytest.approx(task._loss(task(batch), batch)["loss"].item(), abs=1e-5)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    # a downstream encoder (AutoModel, as model.checkpoint=<dir>) gets exactly the trained encoder
    encoder = AutoModel.from_pretrained(tmp_path)
    for name, value in task.backbone.model.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name
    assert (tmp_path / "tokenizer.json").is_file()


def test_distilbert_loss_and_export_match_distilbert_for_masked_lm(tmp_path: Path) -> None:
    task = tiny_task("distilbert").eval()
    randomize(task)
    batch = hand_batch(task, nsp=False)
    ours = task._loss(task(batch), batch)["loss"]
    task.export_pretrained(tmp_path)
    reloaded = DistilBertForMaskedLM.from_pretrained(tmp_path).eval()
    expected = reloaded(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)


def test_mlm_decoder_is_tied_to_the_input_embeddings() -> None:
    task = tiny_task("bert")
    batch = hand_batch(task, nsp=False)
    task._loss(task(batch), batch)["loss"].backward()
    embeddings = task.backbone.input_embeddings().weight
    # the decoder's gradient lands on the embedding table, at the rows of every vocabulary entry
    assert embeddings.grad is not None and (embeddings.grad.abs().sum(-1) > 0).float().mean() > 0.9
    assert sum(p.numel() for p in task.mlm_head.parameters()) == 32 * 32 + 32 + 2 * 32 + embeddings.shape[0]


def test_nsp_with_distilbert_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"task.nsp=true needs an encoder with segment embeddings"):
        tiny_task("distilbert", nsp=True)


# ---- through train(): smoke, eval, predict, learning, pretrain -> fine-tune ----------------------------
from headstart.eval import evaluate  # noqa: E402
from headstart.predict import predict  # noqa: E402
from headstart.run.build import build  # noqa: E402
from headstart.run.errors import ConfigError  # noqa: E402
from headstart.train import train  # noqa: E402

SHORT = [
    "task=masked_lm",
    "model.preset=tiny",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=8",
    "data.block_size=32",
    "data.synthetic_sizes={train: 48, val: 16}",
]


@pytest.mark.parametrize(
    "model, extra",
    [("bert", []), ("bert", ["task.nsp=true"]), ("distilbert", ["task.noise.whole_word=true"])],
    ids=["bert", "bert-nsp", "distilbert-whole-word"],
)
def test_each_model_trains_writes_metrics_and_exports(tmp_path: Path, model: str, extra: list[str]) -> None:
    results = train(make_cfg(tmp_path, *SHORT, f"model={model}", *extra))
    written = json.loads((tmp_path / "metrics.json").read_text())
    keys = [
        "val/mlm_loss",
        "val/mlm_acc",
        "val/perplexity",
        "best_checkpoint",
        "fit_seconds",
        "train_samples_per_second",
        "peak_memory_mb",
        "pretrained_dir",
    ]
    for key in keys + (["val/nsp_acc"] if extra == ["task.nsp=true"] else []):
        assert key in written, key
    assert ("val/nsp_acc" in written) == (extra == ["task.nsp=true"])
    assert written["global_step"] == 3 and results["val/mlm_loss"] == pytest.approx(written["val/mlm_loss"])
    assert written["val/perplexity"] == pytest.approx(math.exp(written["val/mlm_loss"]), rel=1e-4)
    exported = Path(written["pretrained_dir"])
    assert exported == tmp_path / "pretrained"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in exported.iterdir()}


def test_nsp_with_distilbert_fails_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task=masked_lm: task.nsp=true needs an encoder with segment embeddings.*use task.nsp=false"):
        train(make_cfg(tmp_path, *SHORT, "model=distilbert", "task.nsp=true"))


def test_media_eval_and_fill_mask_predict_from_the_checkpoint(tmp_path: Path) -> None:
    results = train(
        make_cfg(
            tmp_path / "run",
            *SHORT,
            "task.nsp=true",
            "logger=default",
            "trainer.max_steps=-1",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        )
    )
    tables = list((tmp_path / "run" / "wandb").rglob("media/table/**/*.table.json"))
    assert tables, "no W&B table of masked examples"
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["masked input", "prediction", "original", "original->predicted"]
    ckpt = results["best_checkpoint"]

    metrics = evaluate(make_cfg(tmp_path / "eval", f"ckpt_path={ckpt}", "split=val", "trainer.limit_val_batches=2", config_name="eval"))
    for key in ("val/mlm_loss", "val/mlm_acc", "val/perplexity", "val/nsp_acc"):
        assert metrics[key] == pytest.approx(results[key], abs=1e-5), key  # same masks every evaluation

    inputs = tmp_path / "in.txt"
    inputs.write_text("the [MASK] dog near the king sings .\nno mask here\nthe [MASK] [MASK] .\n")
    records = predict(make_cfg(tmp_path / "pred", f"ckpt_path={ckpt}", f"inputs={inputs}", "task.predict_top_k=3", config_name="predict"))
    assert [len(r["masks"]) for r in records] == [1, 0, 2]
    first = records[0]["masks"][0]
    assert first["position"] == 2 and len(first["tokens"]) == 3 and first["scores"] == sorted(first["scores"], reverse=True)
    assert records[1]["filled"] == "no mask here" and "[MASK]" not in records[0]["filled"]


@pytest.mark.slow
def test_tiny_bert_learns_the_synthetic_grammar(tmp_path: Path) -> None:
    """experiment=synthetic/masked_lm_bert: val/mlm_acc >= 0.44 (most frequent token: 0.32; measured 0.485)."""
    results = train(make_cfg(tmp_path, "experiment=synthetic/masked_lm_bert"))
    assert results["val/mlm_acc"] >= 0.44, results


def test_pretrain_then_fine_tune_text_classification_from_the_export(tmp_path: Path) -> None:
    pretrained = Path(train(make_cfg(tmp_path / "pre", *SHORT))["pretrained_dir"])
    fine_tune = [
        "task=text_classification",
        "model=bert",
        f"model.checkpoint={pretrained}",
        "model.preset=null",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "data.batch_size=8",
        "data.synthetic_sizes={train: 48, val: 16, test: 16}",
    ]
    exported = AutoModel.from_pretrained(pretrained).state_dict()
    start = build(make_cfg(tmp_path / "probe", *fine_tune)).task.backbone.model.state_dict()
    assert exported.keys() == start.keys()
    for name, value in exported.items():
        assert torch.equal(start[name], value), name  # the encoder starts from the exported weights

    results = train(make_cfg(tmp_path / "ft", *fine_tune))
    assert "val/acc" in results and math.isfinite(results["val/acc"]) and results["global_step"] == 4
    trained = torch.load(results["best_checkpoint"], weights_only=True, map_location="cpu")["state_dict"]
    moved = [n for n, v in exported.items() if not torch.equal(trained[f"backbone.model.{n}"], v)]
    assert moved, "fine-tuning did not update the encoder"
