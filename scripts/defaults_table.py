"""``python -m scripts.defaults_table [--check]``: docs/defaults.md, every task's defaults and why.

The values are read from the composed config (``python train.py task=<task>``), so the table
cannot drift from conf/; the reasons are the ``SOURCES`` below. ``--check`` exits 1 when
docs/defaults.md differs from what this writes (tests/test_configs.py runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from headstart.run.checks import CONF_DIR
from headstart.run.config import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "defaults.md"
TASKS = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))

# (config key, shown as) in table order; a key a task's config lacks is left out of its rows.
KEYS = [
    ("model.name", "model"),
    ("optim.optimizer._target_", "optimizer"),
    ("optim.lr", "lr"),
    ("optim.weight_decay", "weight decay"),
    ("optim.warmup_ratio", "warmup (fraction of steps)"),
    ("optim.scheduler.schedule", "schedule"),
    ("trainer.gradient_clip_val", "gradient clipping (norm)"),
    ("trainer.max_epochs", "epochs"),
    ("data.batch_size", "batch size"),
    ("task.head.dropout", "head dropout"),
    ("task.pooling", "sequence pooling"),
    ("task.loss.label_smoothing", "label smoothing"),
    ("model.freeze_feature_encoder", "freeze feature encoder"),
    ("model.mask_time_prob", "SpecAugment time masking"),
    ("model.layer_drop", "layer drop"),
    ("model.freeze_steps", "backbone frozen for N steps"),
    ("model.freeze_blocks", "frozen first blocks"),
    ("data.crop_scale", "random resized crop scale"),
    ("data.hflip", "horizontal flip"),
    ("data.eval_crop_ratio", "eval centre crop (never upsampled)"),
    ("data.group_by_length", "length-grouped batches"),
    ("task.noise.probability", "masked tokens"),
    ("task.noise.mask_ratio", "masked span ratio"),
    ("task.mask_prob", "masked frames (pretraining)"),
]

# Why each default is what it is: by key, and by (task, key) where a task differs.
SOURCES: dict[Any, str] = {
    "model.name": "the task's usual architecture (README)",
    "optim.optimizer._target_": "AdamW: Loshchilov & Hutter 2019; transformers' Trainer default",
    "optim.lr": "1e-4: between fine-tuning (2e-5..5e-5, BERT) and from-scratch (5e-4..1e-3) rates; a recipe sets its own",
    "optim.weight_decay": "0.05: DeiT / ConvNeXt / Swin; no decay on biases, norms, position tables",
    "optim.warmup_ratio": "5 % linear warm-up: DeiT, BERT (10 %) and ViT fine-tuning use one",
    "optim.scheduler.schedule": "cosine to 0: DeiT, ConvNeXt, Mask2Former, wav2vec2 fine-tuning (tri-stage ~ cosine)",
    "trainer.gradient_clip_val": "1.0: transformers' Trainer (max_grad_norm), BERT, wav2vec2, ViT fine-tuning",
    "trainer.max_epochs": "10: a short default run; recipes in conf/experiment set the paper's",
    "data.batch_size": "32: transformers' examples' per-device batch; fits a 16 GB GPU for base models",
    "task.head.dropout": "0.0 on pooled vision/audio features (timm, HF's ViT/ConvNeXT heads)",
    "task.loss.label_smoothing": "0.0 (0.1 for translation: Vaswani et al. 2017)",
    "model.freeze_feature_encoder": "auto: frozen on checkpoint weights (wav2vec2 fine-tuning), trained on random ones: "
                                    "FSDD tiny, 10 epochs: 0.37 frozen vs 0.89 trained (issue 22)",
    "model.mask_time_prob": "auto: 0.05 on checkpoint weights (wav2vec2 fine-tuning), 0 on random ones",
    "model.layer_drop": "0.0: HF's 0.1 is for fine-tuning large pretrained models",
    "model.freeze_steps": "0: wav2vec2's frozen-encoder warm-up is opt-in",
    "model.freeze_blocks": "0: every block trains",
    "data.crop_scale": "auto: (0.08, 1) (Inception / timm ImageNet) for inputs >= 96 px, (0.35, 1) below: tiny ViT, "
                       "CIFAR small, 30 epochs: 0.324 vs 0.380 val acc (docs/performance.md)",
    "data.hflip": "0.5: standard",
    "data.eval_crop_ratio": "0.875: the ImageNet protocol (resize 256, crop 224); an image already at the model's size "
                            "is kept whole (CIFAR small: 0.310 -> 0.324 val acc)",
    "data.group_by_length": "true: batches of similar length (transformers' group_by_length), less padding",
    "task.noise.probability": "15 %, 80/10/10: BERT (Devlin et al. 2019)",
    "task.noise.mask_ratio": "30 % Poisson(3) spans: BART (Lewis et al. 2020)",
    "task.mask_prob": "0.65, spans of 10: wav2vec 2.0 (Baevski et al. 2020)",
    ("text_classification", "task.head.dropout"): "0.1: BERT's classifier dropout",
    "task.pooling": ("auto: the family's transformers *ForSequenceClassification head (BERT's pooler, DistilBERT's "
                     "pre-classifier), so it exports exactly; measured (defaults_textcls, MiniLM rt-polarity, 100 steps, 2 "
                     "seeds): val acc 0.787 ± 0.009, [CLS] before 0.790 ± 0.003, the Trainer 0.784 ± 0.010"),
    ("token_classification", "task.head.dropout"): "0.1: BERT's classifier dropout",
    ("translation", "task.loss.label_smoothing"): "0.1: Vaswani et al. 2017",
}


def composed(task: str) -> Any:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}"])
    return cfg


def shown(value: Any) -> str:
    if isinstance(value, str) and "." in value and value[:1].islower() and "/" not in value:
        value = value.rsplit(".", 1)[-1]  # a _target_: the class name
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return f"`{value}`"


def rows(task: str) -> list[tuple[str, str, str]]:
    cfg = composed(task)
    found = []
    for key, label in KEYS:
        value = OmegaConf.select(cfg, key, default="__missing__", throw_on_missing=False)
        if isinstance(value, str) and value == "__missing__":
            continue
        found.append((label, shown(value), SOURCES.get((task, key), SOURCES[key])))
    return found


def render() -> str:
    lines = [
        "# Defaults of every task, and why",
        "",
        "What `python train.py task=<task>` trains with when nothing else is given (the values come",
        "from the composed config; this file is written by `python -m scripts.defaults_table` and a",
        "test checks it is current). A recipe in `conf/experiment/` sets a paper's values on top.",
        "Measured comparisons of these defaults with transformers' Trainer defaults are in",
        "[performance.md](performance.md) (`python -m scripts.bench defaults`).",
        "",
    ]
    for task in TASKS:
        lines += [f"## {task}", "", "| key | value | why |", "|---|---|---|"]
        lines += [f"| {label} | {value} | {why} |" for label, value, why in rows(task)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/defaults.md is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ""
        if current != text:
            print(f"{DOC} is not current: run python -m scripts.defaults_table", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
