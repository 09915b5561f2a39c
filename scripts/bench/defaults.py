"""``defaults_*``: each side as its own users run it, with its own defaults (issue 22, item 1).

The other comparisons hand every side one recipe. Here each side gets only what a user of it
types, and the rest is that side's own default:

- headstart: ``train(cfg)`` on the README's task command (task, model, ``model.checkpoint`` or
  ``model.preset=tiny``, the data paths, ``data.batch_size``, ``trainer.max_epochs`` /
  ``max_steps``, ``optim.lr`` where the row names one, ``seed``) plus the dashboard switches of
  :data:`scripts.bench.hs_side.QUIET` and :data:`HS_QUIET`; everything else (weight decay,
  warmup, schedule, clipping, freezing, dropout, masking, length grouping, augmentation...) is
  whatever conf/ says when the row runs;
- transformers' ``Trainer`` with ``TrainingArguments`` defaults except batch size, epochs / steps,
  lr and seed (plus output dir, ``report_to=[]``, ``use_cpu=True``, ``save_strategy="no"`` and no
  progress bar), fed as transformers' example script for the task feeds it, with that script's
  defaults (``run_classification.py``, ``run_ner.py``, ``run_audio_classification.py``) and the
  model's own ``AutoModelFor*`` head and init;
- CIFAR: a plain PyTorch loop with the standard CIFAR recipe (SGD momentum 0.9 nesterov, lr 0.1,
  weight decay 5e-4, cosine annealing per epoch, RandomCrop(32, padding=4) + flip, batch 128) on
  the transformers model of headstart's tiny preset config, random init, with its linear head.

Each row runs both sides once per seed, alternating (A B A B ...), and reports the metric and
training samples/s as mean +- std over the seeds and headstart/peer ratios of both. The metric is
each side's own evaluation of its final weights on the same held-out examples.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from scripts.bench.harness import Side, SideResult, alternate, environment, summarise, write_json
from scripts.bench.peers import CountingCollator

NAMES = ("defaults_textcls", "defaults_ner", "defaults_audio", "defaults_cifar")
HEADSTART = "headstart"
# Dashboard only (W&B media of validation samples; no W&B here) and the device the peers use too.
HS_QUIET = ["~callbacks.media", "trainer.accelerator=cpu"]
# What the bench sets on the Trainer besides batch size, epochs / steps, lr and seed.
TRAINER_SET = {"output_dir": "a temporary folder", "report_to": [], "use_cpu": True, "save_strategy": "no",
               "disable_tqdm": True, "per_device_eval_batch_size": "= the training batch size (evaluation only)"}
# TrainingArguments fields recorded in the JSON (their values, defaults or set).
TRAINER_KEYS = (
    "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "max_grad_norm",
    "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "train_sampling_strategy", "dataloader_num_workers", "dataloader_drop_last",
    "remove_unused_columns", "label_smoothing_factor", "fp16", "bf16", "eval_strategy", "seed", "data_seed",
    "full_determinism", "torch_compile", "use_cpu",
)  # fmt: skip
# headstart config keys recorded in the JSON (as conf/ resolves them for the row's command).
HEADSTART_KEYS = (
    "optim.optimizer._target_", "optim.lr", "optim.backbone_lr", "optim.weight_decay", "optim.optimizer.betas",
    "optim.optimizer.eps", "optim.warmup_ratio", "optim.min_lr_ratio", "optim.scheduler.schedule", "optim.interval",
    "trainer.gradient_clip_val", "trainer.precision", "trainer.accumulate_grad_batches", "trainer.max_epochs",
    "trainer.max_steps", "data.batch_size", "data.num_workers", "data.max_length", "data.group_by_length",
    "data.bucket_by_length", "data.label_all_tokens", "data.max_seconds", "data.cache_mb", "data.image_size",
    "data.crop_scale", "data.hflip", "data.eval_crop_ratio", "model.pretrained", "model.freeze",
    "model.freeze_feature_encoder", "model.freeze_steps", "model.mask_time_prob", "model.layer_drop",
    "model.pooling", "model.config", "task.head.dropout", "task.loss.label_smoothing", "callbacks", "seed",
)  # fmt: skip
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass
class Row:
    """One comparison: a headstart run and a peer run, each a function of the seed."""

    name: str
    metric: str
    peer: str
    headstart: Callable[[int], SideResult]
    run_peer: Callable[[int], SideResult]
    settings: dict[str, Any] = field(default_factory=dict)


def seed_list(n: int) -> list[int]:
    """42 (both sides' default seed), 43, ..."""
    return [42 + i for i in range(n)]


def plain(value: Any) -> Any:
    """JSON-friendly: enums by value, containers element-wise."""
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# ---- the headstart side ----------------------------------------------------------------------


def headstart_side(overrides: list[str], metric: str) -> Callable[[int], SideResult]:
    from scripts.bench.hs_side import run_headstart

    return lambda seed: run_headstart([*HS_QUIET, *overrides, f"seed={seed}"], metric)


def headstart_record(overrides: list[str]) -> dict[str, Any]:
    """What the row's command resolves to in conf/ now (the values headstart trains with)."""
    from scripts.bench.hs_side import compose_cfg

    cfg = compose_cfg([*HS_QUIET, *overrides, "seed=42"], Path(tempfile.mkdtemp(prefix="bench_defaults_cfg_")))
    missing = object()
    values: dict[str, Any] = {}
    for key in HEADSTART_KEYS:
        value = OmegaConf.select(cfg, key, default=missing)
        if value is missing:
            continue
        if key == "callbacks":
            value = sorted(value.keys()) if value is not None else []
        values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return {"command": ["python train.py", *overrides, "seed=<seed>"], "dashboard_overrides": [*quiet(), *HS_QUIET],
            "resolved": values, "source": "conf/ (composed when the row ran)"}


def quiet() -> list[str]:
    from scripts.bench.hs_side import QUIET

    return list(QUIET)


# ---- the Trainer side ------------------------------------------------------------------------


def training_args(seed: int, batch_size: int, lr: float, epochs: float, max_steps: int) -> Any:
    """TrainingArguments defaults except batch size, epochs / steps, lr, seed (and TRAINER_SET)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_defaults_trainer_"), report_to=[], use_cpu=True, save_strategy="no",
        disable_tqdm=True, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        learning_rate=lr, num_train_epochs=epochs, max_steps=max_steps, seed=seed,
    )


def trainer_record(batch_size: int, lr: float, epochs: float, max_steps: int, script: dict[str, Any]) -> dict[str, Any]:
    import transformers

    args = training_args(42, batch_size, lr, epochs, max_steps)
    values = {k: plain(getattr(args, k)) for k in TRAINER_KEYS if hasattr(args, k)}
    return {"transformers": transformers.__version__, "training_arguments": values,
            "set_by_bench": ["per_device_train_batch_size", "learning_rate", "num_train_epochs", "max_steps", "seed", *TRAINER_SET],
            "other_settings": TRAINER_SET, "example_script": script,
            "source": "transformers.TrainingArguments defaults (installed version), example script defaults as listed"}


class BatchCounts(CountingCollator):
    """A CountingCollator that also keeps (examples, real positions, all positions) per batch."""

    def reset(self) -> None:
        super().reset()
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = self.collate(items)
        real, total = self.positions(batch)
        self.batches.append((len(items), real, total))
        self.samples, self.real, self.total = self.samples + len(items), self.real + real, self.total + total
        return batch


def run_trainer_defaults(
    model: torch.nn.Module, args: Any, train: Any, evaluate: Any, collate: BatchCounts,
    score: Callable[[np.ndarray, np.ndarray], float], processing_class: Any = None,
) -> SideResult:
    """``trainer.train()`` then ``trainer.predict(evaluate)`` scored by ``score``; samples/s over the
    training loop only (the Trainer's own figure, which counts its set-up, is kept in ``extra``)."""
    from transformers import Trainer, TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            collate.reset()
            self.start = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.perf_counter() - self.start
            # the batches trained on: the loader collates one batch ahead, so a run stopped by
            # max_steps has collated one more than it trained on
            steps = state.global_step * args.gradient_accumulation_steps
            kept = collate.batches[:steps]
            self.samples, real, self.positions = (sum(b[i] for b in kept) for i in range(3))
            self.padding = 1 - real / self.positions if self.positions else None

    clock = Clock()
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate, processing_class=processing_class,
                      callbacks=[clock])
    output = trainer.train()
    out = trainer.predict(evaluate)
    predictions = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return SideResult(
        samples_per_second=clock.samples / clock.seconds, metric=score(predictions, out.label_ids),
        padding_fraction=clock.padding, train_seconds=clock.seconds, samples=clock.samples,
        positions_per_second=clock.positions / clock.seconds if clock.positions else None,
        extra={"global_step": output.global_step, "trainer_train_samples_per_second": output.metrics.get("train_samples_per_second")},
    )


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())


# ---- text classification: MiniLM on rt-polarity ---------------------------------------------


def write_rt_polarity(folder: Path, out: Path, val_fraction: float = 0.1, seed: int = 42) -> Path:
    """rt-polarity.pos / .neg -> out/train.json + out/val.json (JSON lines {"text", "label"}): one
    fixed held-out split for both sides and every seed (``lines`` would redraw it per seed)."""
    from headstart.data.splits import hold_out

    records = [{"text": line.strip(), "label": file.suffix[1:]} for file in sorted(folder.glob("rt-polarity.*"))
               for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    train, val = hold_out(records, val_fraction, seed)
    return write_json_lines(out, {"train": train, "val": val})


def write_json_lines(out: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


RUN_CLASSIFICATION = {
    "script": "examples/pytorch/text-classification/run_classification.py",
    "max_seq_length": 128, "pad_to_max_length": True, "data_collator": "default_data_collator (padded to max_seq_length)",
    "shuffle_train_dataset": False, "text_column_names": "text (the file's column)", "label_list": "sorted str labels of train",
    "metric": "accuracy",
}  # fmt: skip


def textcls_row(data: Path, checkpoint: Path, *, batch_size: int = 32, lr: float = 5e-5, epochs: int = 3,
                max_steps: int = -1, name: str = "defaults_textcls") -> Row:
    """data: a folder with train.json / val.json (JSON lines {"text", "label"})."""
    steps = [f"trainer.max_steps={max_steps}"] if max_steps > 0 else []
    overrides = ["task=text_classification", "model=bert", f"model.checkpoint={checkpoint}", "data.source=jsonl",
                 f"data.path={data}", f"data.batch_size={batch_size}", f"trainer.max_epochs={epochs}", *steps, f"optim.lr={lr}"]
    cache: dict[str, Any] = {}

    def prepared() -> dict[str, Any]:
        if not cache:
            from datasets import load_dataset
            from transformers import AutoTokenizer

            raw = load_dataset("json", data_files={"train": str(data / "train.json"), "validation": str(data / "val.json")},
                               cache_dir=tempfile.mkdtemp(prefix="bench_defaults_hfds_"))
            labels = sorted({str(v) for v in raw["train"].unique("label")})
            label_to_id = {v: i for i, v in enumerate(labels)}
            tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
            max_len = min(RUN_CLASSIFICATION["max_seq_length"], tokenizer.model_max_length)

            def preprocess(examples: dict[str, list]) -> Any:
                result = tokenizer(examples["text"], padding="max_length", max_length=max_len, truncation=True)
                result["label"] = [label_to_id[str(v)] for v in examples["label"]]
                return result

            cache.update(raw=raw.map(preprocess, batched=True), labels=labels, tokenizer=tokenizer, max_len=max_len)
        return cache

    def peer(seed: int) -> SideResult:
        from transformers import AutoConfig, AutoModelForSequenceClassification, default_data_collator, set_seed

        p = prepared()
        set_seed(seed)  # the script seeds before building the model (its head's init)
        config = AutoConfig.from_pretrained(str(checkpoint), num_labels=len(p["labels"]), finetuning_task="text-classification")
        config.problem_type = "single_label_classification"
        model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), config=config)
        model.config.label2id = {v: i for i, v in enumerate(p["labels"])}
        model.config.id2label = dict(enumerate(p["labels"]))
        args = training_args(seed, batch_size, lr, epochs, max_steps)
        return run_trainer_defaults(model, args, p["raw"]["train"], p["raw"]["validation"], BatchCounts(default_data_collator),
                                    accuracy, processing_class=p["tokenizer"])

    settings = {
        "headstart": headstart_record(overrides),
        "peer": trainer_record(batch_size, lr, epochs, max_steps, RUN_CLASSIFICATION),
        "data": str(data), "checkpoint": str(checkpoint), "train_examples": count_lines(data / "train.json"),
        "eval_examples": count_lines(data / "val.json"),
    }
    return Row(name, "val/acc", "trainer_defaults", headstart_side(overrides, "val/acc"), peer, settings)


def count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# ---- token classification: MiniLM NER on CoNLL-2003 -----------------------------------------


def read_conll(path: Path, limit: int | None = None) -> list[dict[str, list[str]]]:
    """Column file -> [{"tokens", "ner_tags"}] (token: first column, tag: last; -DOCSTART- skipped)."""
    sentences, tokens, tags = [], [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        parts = line.split()
        if parts and parts[0] != "-DOCSTART-":
            tokens.append(parts[0])
            tags.append(parts[-1])
        elif tokens:
            sentences.append({"tokens": tokens, "ner_tags": tags})
            tokens, tags = [], []
            if limit and len(sentences) >= limit:
                break
    return sentences


def write_conll(sentences: list[dict[str, list[str]]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{t} {g}\n" for t, g in zip(s["tokens"], s["ner_tags"])) + "\n" for s in sentences))
    return path


RUN_NER = {
    "script": "examples/pytorch/token-classification/run_ner.py",
    "max_seq_length": None, "pad_to_max_length": False, "label_all_tokens": False,
    "data_collator": "DataCollatorForTokenClassification(tokenizer)", "label_list": "sorted tags of train",
    "return_entity_level_metrics": False,
    "metric": "entity F1 by headstart.metrics.EntityF1 (seqeval's default rules; the script loads seqeval through evaluate, not installed)",
}  # fmt: skip


def ner_row(train_file: Path, val_file: Path, checkpoint: Path, *, batch_size: int = 32, lr: float = 5e-5, epochs: int = 1,
            max_steps: int = -1, name: str = "defaults_ner") -> Row:
    """train_file / val_file: CoNLL column files (token first, tag last)."""
    from scripts.bench.text import entity_f1_scorer

    steps = [f"trainer.max_steps={max_steps}"] if max_steps > 0 else []
    overrides = ["task=token_classification", "model=bert", f"model.checkpoint={checkpoint}", "data.source=conll",
                 f"data.train_path={train_file}", f"data.val_path={val_file}", f"data.batch_size={batch_size}",
                 f"trainer.max_epochs={epochs}", *steps, f"optim.lr={lr}"]  # fmt: skip
    cache: dict[str, Any] = {}

    def prepared() -> dict[str, Any]:
        if not cache:
            from datasets import load_dataset
            from transformers import AutoTokenizer

            # what a run_ner.py user feeds it: the CoNLL files as JSON lines with tokens / ner_tags lists
            folder = write_json_lines(Path(tempfile.mkdtemp(prefix="bench_defaults_ner_")),
                                      {"train": read_conll(train_file), "val": read_conll(val_file)})
            raw = load_dataset("json", data_files={"train": str(folder / "train.json"), "validation": str(folder / "val.json")},
                               cache_dir=tempfile.mkdtemp(prefix="bench_defaults_hfds_"))
            labels = sorted({t for tags in raw["train"]["ner_tags"] for t in tags})
            label_to_id = {v: i for i, v in enumerate(labels)}
            tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))

            def tokenize_and_align_labels(examples: dict[str, list]) -> Any:
                tokenized = tokenizer(examples["tokens"], padding=False, truncation=True, max_length=None, is_split_into_words=True)
                all_labels = []
                for i, tags in enumerate(examples["ner_tags"]):
                    previous, ids = None, []
                    for word in tokenized.word_ids(batch_index=i):
                        ids.append(-100 if word is None or word == previous else label_to_id[tags[word]])  # first sub-token only
                        previous = word
                    all_labels.append(ids)
                tokenized["labels"] = all_labels
                return tokenized

            cache.update(raw=raw.map(tokenize_and_align_labels, batched=True), labels=labels, tokenizer=tokenizer)
        return cache

    def peer(seed: int) -> SideResult:
        from transformers import AutoConfig, AutoModelForTokenClassification, DataCollatorForTokenClassification, set_seed

        p = prepared()
        set_seed(seed)
        config = AutoConfig.from_pretrained(str(checkpoint), num_labels=len(p["labels"]), finetuning_task="ner")
        model = AutoModelForTokenClassification.from_pretrained(str(checkpoint), config=config)
        model.config.label2id = {v: i for i, v in enumerate(p["labels"])}
        model.config.id2label = dict(enumerate(p["labels"]))
        args = training_args(seed, batch_size, lr, epochs, max_steps)
        collate = BatchCounts(DataCollatorForTokenClassification(p["tokenizer"]))
        return run_trainer_defaults(model, args, p["raw"]["train"], p["raw"]["validation"], collate,
                                    entity_f1_scorer(p["labels"]), processing_class=p["tokenizer"])

    settings = {
        "headstart": headstart_record(overrides),
        "peer": trainer_record(batch_size, lr, epochs, max_steps, RUN_NER),
        "train_file": str(train_file), "val_file": str(val_file), "checkpoint": str(checkpoint),
        "train_examples": len(read_conll(train_file)), "eval_examples": len(read_conll(val_file)),
    }
    return Row(name, "val/f1 (entity)", "trainer_defaults", headstart_side(overrides, "val/f1"), peer, settings)


# ---- audio classification: tiny wav2vec2 on FSDD --------------------------------------------

RUN_AUDIO = {
    "script": "examples/pytorch/audio-classification/run_audio_classification.py",
    "max_length_seconds": 20, "freeze_feature_encoder": True, "attention_mask": True,
    "feature_extractor": "Wav2Vec2FeatureExtractor as facebook/wav2vec2-base's (16 kHz, do_normalize, padding 0.0) "
                         "with return_attention_mask=True",
    "decoding": "every read (datasets' Audio column, resampled to 16 kHz): soundfile + torchaudio's resampler here",
    "data_collator": "DataCollatorWithPadding(feature_extractor) (the Trainer's default for a feature extractor)",
    "label_list": "sorted labels of train", "metric": "accuracy",
}  # fmt: skip


def wav2vec2_config(num_labels: int, presets: dict[str, Any] | None = None) -> Any:
    """A Wav2Vec2Config of headstart's tiny preset's size and structure (conv stack, width, depth,
    heads, feed-forward, positional conv, norm placement); dropout, LayerDrop, masking and the
    classifier's projection stay Wav2Vec2Config's defaults."""
    from transformers import Wav2Vec2Config

    from headstart.backbones.wav2vec2 import TINY

    tiny = {**TINY, **((presets or {}).get("tiny") or {})}
    convs = [tuple(c) for c in tiny["extractor_conv_layer_config"]]
    return Wav2Vec2Config(
        feat_extract_norm="layer" if tiny["extractor_mode"] == "layer_norm" else "group",
        conv_dim=[c[0] for c in convs], conv_kernel=[c[1] for c in convs], conv_stride=[c[2] for c in convs],
        conv_bias=tiny["extractor_conv_bias"], hidden_size=tiny["encoder_embed_dim"],
        num_hidden_layers=tiny["encoder_num_layers"], num_attention_heads=tiny["encoder_num_heads"],
        intermediate_size=tiny["encoder_ff_interm_features"], num_conv_pos_embeddings=tiny["encoder_pos_conv_kernel"],
        num_conv_pos_embedding_groups=tiny["encoder_pos_conv_groups"], do_stable_layer_norm=tiny["encoder_layer_norm_first"],
        num_labels=num_labels, finetuning_task="audio-classification",
    )


def random_subsample(wav: np.ndarray, max_length: float, sample_rate: int) -> np.ndarray:
    """run_audio_classification.py's random crop of ``max_length`` seconds (clips shorter pass)."""
    length = int(round(sample_rate * max_length))
    if len(wav) <= length:
        return wav
    offset = random.randint(0, len(wav) - length - 1)
    return wav[offset : offset + length]


class DecodedClips(torch.utils.data.Dataset):
    """What the script's ``set_transform`` hands the Trainer: each read decodes the file at the
    extractor's rate, a training read cuts a random ``max_length_seconds`` window, and the feature
    extractor normalises the clip; ``{"input_values", "labels"}``."""

    def __init__(self, rows: list[tuple[str, int]], extractor: Any, max_length_seconds: float | None) -> None:
        self.rows, self.extractor, self.max_length_seconds = rows, extractor, max_length_seconds

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import soundfile as sf
        import torchaudio

        path, label = self.rows[index]
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        target = self.extractor.sampling_rate
        if rate != target:
            wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, target).numpy()
        if self.max_length_seconds:
            wave = random_subsample(wave, self.max_length_seconds, target)
        inputs = self.extractor(wave, sampling_rate=target)
        return {"input_values": inputs["input_values"][0], "labels": label}


def read_manifest(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["path"] = str((path.parent / row["path"]).resolve()) if not Path(row["path"]).is_absolute() else row["path"]
    return rows


def audio_row(train_manifest: Path, val_manifest: Path, *, batch_size: int = 32, lr: float = 1e-3, epochs: int = 10,
              max_steps: int = -1, name: str = "defaults_audio") -> Row:
    """Manifests: JSON lines {"path", "label"[, "duration"]}."""
    steps = [f"trainer.max_steps={max_steps}"] if max_steps > 0 else []
    overrides = ["task=audio_classification", "model=wav2vec2", "model.preset=tiny", "data.source=manifest",
                 f"data.train_path={train_manifest}", f"data.val_path={val_manifest}", f"data.batch_size={batch_size}",
                 f"trainer.max_epochs={epochs}", *steps, f"optim.lr={lr}"]  # fmt: skip
    train_rows, val_rows = read_manifest(train_manifest), read_manifest(val_manifest)
    labels = sorted({str(r["label"]) for r in train_rows})
    label_to_id = {v: i for i, v in enumerate(labels)}
    from scripts.bench.hs_side import compose_cfg

    presets = OmegaConf.to_container(compose_cfg(overrides, Path(tempfile.mkdtemp(prefix="bench_defaults_cfg_"))).model.presets)
    config = wav2vec2_config(len(labels), presets)  # type: ignore[arg-type]

    def peer(seed: int) -> SideResult:
        from transformers import AutoModelForAudioClassification, DataCollatorWithPadding, Wav2Vec2FeatureExtractor, set_seed

        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                             return_attention_mask=RUN_AUDIO["attention_mask"])
        train = DecodedClips([(r["path"], label_to_id[str(r["label"])]) for r in train_rows], extractor, RUN_AUDIO["max_length_seconds"])
        evaluate = DecodedClips([(r["path"], label_to_id[str(r["label"])]) for r in val_rows], extractor, None)
        set_seed(seed)
        model = AutoModelForAudioClassification.from_config(config)  # random init: no checkpoint of this size exists
        if RUN_AUDIO["freeze_feature_encoder"]:
            model.freeze_feature_encoder()
        args = training_args(seed, batch_size, lr, epochs, max_steps)
        collate = BatchCounts(DataCollatorWithPadding(extractor))
        return run_trainer_defaults(model, args, train, evaluate, collate, accuracy, processing_class=extractor)

    keys = ("feat_extract_norm", "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups",
            "do_stable_layer_norm", "hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout",
            "final_dropout", "layerdrop", "mask_time_prob", "mask_time_length", "mask_feature_prob", "classifier_proj_size",
            "use_weighted_layer_sum")  # fmt: skip
    settings = {
        "headstart": headstart_record(overrides),
        "peer": trainer_record(batch_size, lr, epochs, max_steps, RUN_AUDIO),
        "peer_model": {"class": "Wav2Vec2ForSequenceClassification (AutoModelForAudioClassification.from_config)",
                       "config": {k: plain(getattr(config, k)) for k in keys}},
        "train_manifest": str(train_manifest), "val_manifest": str(val_manifest),
        "train_examples": len(train_rows), "eval_examples": len(val_rows),
    }
    return Row(name, "val/acc", "trainer_defaults", headstart_side(overrides, "val/acc"), peer, settings)


# ---- image classification: tiny ViT on CIFAR-10 images --------------------------------------

CIFAR_RECIPE = {
    "loop": "plain PyTorch: zero_grad, forward, cross-entropy, backward, step; scheduler step per epoch",
    "optimizer": "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4) on every parameter",
    "scheduler": "CosineAnnealingLR(T_max=epochs)", "batch_size": 128, "shuffle": True, "num_workers": 0,
    "train_transform": "RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(CIFAR mean/std)",
    "eval_transform": "ToTensor(), Normalize(CIFAR mean/std)", "normalize": {"mean": CIFAR_MEAN, "std": CIFAR_STD},
    "model": "AutoModelForImageClassification.from_config(headstart's tiny preset config), random init",
    "metric": "accuracy",
}  # fmt: skip


def cifar_subset(src: Path, out: Path, train_per_class: int | None, val_per_class: int | None) -> Path:
    """An ImageFolder (train/ val/) of the first N images per class of ``src``, as symlinks."""
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for class_dir in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            target = out / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[:n]:
                (target / image.name).symlink_to(image.resolve())
    return out


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def cifar_row(folder: Path, *, model: str = "vit", epochs: int = 30, batch_size: int = 128, name: str = "defaults_cifar") -> Row:
    """folder: an ImageFolder with train/<class>/ and val/<class>/ of 32 px images."""
    from scripts.bench.hs_side import compose_cfg

    overrides = ["task=image_classification", f"model={model}", "model.preset=tiny", "data.source=folder",
                 f"data.path={folder}", f"data.batch_size={batch_size}", f"trainer.max_epochs={epochs}"]
    cfg = compose_cfg(overrides, Path(tempfile.mkdtemp(prefix="bench_defaults_cfg_")))
    preset = dict(OmegaConf.to_container(cfg.model.presets.tiny, resolve=True))  # type: ignore[arg-type]

    def peer(seed: int) -> SideResult:
        from torchvision import datasets, transforms
        from transformers import AutoConfig, AutoModelForImageClassification

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
        train = datasets.ImageFolder(str(folder / "train"), transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
        evaluate = datasets.ImageFolder(str(folder / "val"), transforms.Compose([transforms.ToTensor(), normalize]))
        spec = dict(preset)
        config = AutoConfig.for_model(spec.pop("model_type"), **spec, num_labels=len(train.classes))
        net = AutoModelForImageClassification.from_config(config)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0,
                                             generator=torch.Generator().manual_seed(seed))
        loss_fn = torch.nn.CrossEntropyLoss()
        samples, seconds = 0, 0.0
        for _ in range(epochs):
            net.train()
            start = time.perf_counter()
            for images, targets in loader:
                loss = loss_fn(net(pixel_values=images).logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                samples += len(targets)
            schedule.step()
            seconds += time.perf_counter() - start
        net.eval()
        correct = 0
        with torch.no_grad():
            for images, targets in torch.utils.data.DataLoader(evaluate, batch_size=batch_size):
                correct += int((net(pixel_values=images).logits.argmax(-1) == targets).sum())
        return SideResult(samples / seconds, correct / len(evaluate), None, seconds, samples,
                          extra={"final_loss": loss.item(), "nonfinite_loss": not math.isfinite(loss.item())})

    settings = {
        "headstart": headstart_record(overrides),
        "peer": {"recipe": CIFAR_RECIPE, "preset": preset, "epochs": epochs},
        "folder": str(folder), "model": model, "train_examples": count_images(folder / "train"),
        "eval_examples": count_images(folder / "val"),
    }
    return Row(name, "val/acc", "plain_cifar_recipe", headstart_side(overrides, "val/acc"), peer, settings)


# ---- the real rows -----------------------------------------------------------------------------


def build_row(name: str, quick: bool, steps: int | None = None) -> Row:
    """One of :data:`NAMES` on the real data (../shared/data or BENCH_DATA) and MiniLM."""
    from scripts.bench.text import SHARED, minilm_dir

    work = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
    if name == "defaults_textcls":
        data = write_rt_polarity(SHARED / "text" / "rt-polarity", work / "rt-polarity")
        return textcls_row(data, minilm_dir(), epochs=3, max_steps=(steps or 200) if quick else (steps or -1), name=name)
    if name == "defaults_ner":
        conll = SHARED / "text" / "conll2003"
        val = write_conll(read_conll(conll / "eng.testa", 500), work / "eng.testa.500") if quick else conll / "eng.testa"
        return ner_row(conll / "eng.train", val, minilm_dir(), epochs=1, max_steps=(steps or 100) if quick else (steps or -1), name=name)
    if name == "defaults_audio":
        from scripts.bench.audio import write_manifests

        train, val = write_manifests(SHARED / "audio" / "fsdd" / "recordings", work / "fsdd", range(10, 50), range(5, 10))
        return audio_row(train, val, epochs=2 if quick else 10, max_steps=steps or -1, name=name)
    if name == "defaults_cifar":
        source = SHARED / "vision" / "cifar10_small"  # 2,500 train + 500 val images: all of it in full mode
        folder = cifar_subset(source, work / "cifar", 50, 20) if quick else source
        return cifar_row(folder, epochs=3 if quick else 30, name=name)
    raise SystemExit(f"unknown comparison {name!r}: one of {', '.join(NAMES)}")


# ---- running, summarising, reporting ----------------------------------------------------------


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def summarise_row(row: Row, runs: dict[str, list[SideResult]], seeds: Sequence[int]) -> dict[str, Any]:
    """harness.summarise (medians, min / max, per-round ratios) plus mean and std over the seeds
    of the metric and samples/s, and headstart/peer ratios of both means."""
    summary = summarise(runs, reference=HEADSTART)
    for side, results in runs.items():
        entry = summary["sides"][side]
        entry["seeds"] = list(seeds)
        entry["samples_per_second"].update(mean_std([r.samples_per_second for r in results]))
        metrics = [r.metric for r in results if r.metric is not None]
        entry["metric"] = {**(entry["metric"] or {}), **mean_std(metrics)} if metrics else None
    hs, peer = summary["sides"][HEADSTART], summary["sides"][row.peer]
    ratio = summary["ratios"][f"{HEADSTART}/{row.peer}"]
    ratio["samples_per_second_mean_ratio"] = hs["samples_per_second"]["mean"] / peer["samples_per_second"]["mean"]
    if hs["metric"] and peer["metric"]:
        ratio["metric_mean_ratio"] = hs["metric"]["mean"] / peer["metric"]["mean"] if peer["metric"]["mean"] else float("nan")
        ratio["metric_mean_difference"] = hs["metric"]["mean"] - peer["metric"]["mean"]
    summary["metric_name"], summary["peer"] = row.metric, row.peer
    return summary


def _pm(stats: dict[str, Any] | None, spec: str) -> str:
    if not stats:
        return "-"
    std = "-" if stats["std"] is None else format(stats["std"], spec)
    return f"{format(stats['mean'], spec)} ± {std}"


def format_defaults_table(title: str, results: Sequence[tuple[Row, dict[str, Any]]]) -> str:
    """One line per row: metric mean ± std per side, their ratio, samples/s mean ± std per side, their ratio."""
    header = (f"{'row':<18} {'metric':<16} {'peer side':<20} {'headstart metric':>17} {'peer metric':>17} {'hs/peer':>8} "
              f"{'hs samples/s':>17} {'peer samples/s':>17} {'hs/peer':>8} {'seeds':>5}")
    lines = [f"== {title} ==", header, "-" * len(header)]
    for row, summary in results:
        hs, peer = summary["sides"][HEADSTART], summary["sides"][row.peer]
        ratio = summary["ratios"][f"{HEADSTART}/{row.peer}"]
        metric_ratio = ratio.get("metric_mean_ratio")
        lines.append(
            f"{row.name:<18} {row.metric:<16} {row.peer:<20} {_pm(hs['metric'], '.4f'):>17} {_pm(peer['metric'], '.4f'):>17} "
            f"{'-' if metric_ratio is None else format(metric_ratio, '.3f') + 'x':>8} "
            f"{_pm(hs['samples_per_second'], '.1f'):>17} {_pm(peer['samples_per_second'], '.1f'):>17} "
            f"{ratio['samples_per_second_mean_ratio']:>7.3f}x {len(hs['seeds']):>5}"
        )
    lines.append("metric and samples/s: mean ± std over the seeds (std: sample standard deviation); hs/peer: ratio of the means")
    return "\n".join(lines)


def pinned(run: Callable[[int], SideResult], seeds: Sequence[int], threads: int) -> Callable[[], SideResult]:
    """A harness side: each call trains the next seed, starting at ``threads`` torch threads."""
    remaining = iter(seeds)

    def call() -> SideResult:
        torch.set_num_threads(threads)
        return run(next(remaining))

    return call


def run_rows(rows: Sequence[Row], seeds: Sequence[int], out_dir: Path, *, quick: bool = False, threads: int | None = None,
             log: Callable[[str], None] = print) -> list[tuple[Row, dict[str, Any]]]:
    """Each row: both sides per seed, alternating; a table per row and one for all; a JSON per row
    (``<out_dir>/<row>[_quick].json``) and, for several rows, ``<out_dir>/defaults[_quick].json``."""
    threads = threads or torch.get_num_threads()
    suffix = "_quick" if quick else ""
    done: list[tuple[Row, dict[str, Any]]] = []
    for row in rows:
        env = environment()
        log(f"[bench] {row.name}: seeds {list(seeds)}, {threads} torch threads, load {env['load_average']}")
        log(f"[bench] {row.name} headstart: {' '.join(row.settings['headstart']['command'])}")
        peer = row.settings.get("peer", {})
        if "training_arguments" in peer:
            args = " ".join(f"{k}={v}" for k, v in peer["training_arguments"].items())
            log(f"[bench] {row.name} {row.peer}: TrainingArguments {args}; {peer['example_script']['script']}")
        start = time.perf_counter()
        sides = [Side(HEADSTART, pinned(row.headstart, seeds, threads)), Side(row.peer, pinned(row.run_peer, seeds, threads))]
        runs = alternate(sides, len(seeds), log=log)
        summary = summarise_row(row, runs, seeds)
        settings = {**row.settings, "metric": row.metric, "seeds": list(seeds), "quick": quick, "threads": threads,
                    "order": "per seed: headstart then peer (A B A B ...)", "wall_seconds": round(time.perf_counter() - start, 1)}
        log(format_defaults_table(f"{row.name}{' (quick)' if quick else ''}", [(row, summary)]))
        log(f"[bench] wrote {write_json(out_dir / f'{row.name}{suffix}.json', row.name, settings, summary, env)}")
        done.append((row, summary))
    if len(done) > 1:
        log(format_defaults_table(f"defaults{' (quick)' if quick else ''}", done))
        record = {"name": "defaults", "rows": {row.name: {"settings": row.settings, **summary} for row, summary in done},
                  "seeds": list(seeds), "quick": quick, "environment": environment()}
        path = out_dir / f"defaults{suffix}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        log(f"[bench] wrote {path}")
    return done
