"""``audio``: a small random-init wav2vec2 (headstart's ``tiny`` preset: 64-dim, 2 layers) on the
Free Spoken Digit Dataset, train takes 10-49 -> eval takes 5-9 (takes 0-4 are not used).

Every side trains the same model: the peers get headstart's own backbone and mean-pool head
modules (a plain ``nn.Module`` around them, as a researcher would write), initialised from the
state headstart's run starts from, fed by headstart's decoded clips and padding collator. The
Trainer cannot length-group raw audio by itself (it looks for ``input_ids``), so it gets
transformers' ``LengthGroupedSampler`` over the clip lengths, as does the plain loop.

The peers decode every clip each time they read it (file, resample to 16 kHz, normalise), as
transformers' audio-classification example does (``datasets`` decodes an ``Audio`` column at
every access); headstart keeps decoded clips in memory after the first epoch (``data.cache_mb``).
``--no-decode-cache`` adds a headstart side that decodes every epoch too (``data.cache_mb=0``).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from headstart.data.audio_batches import DecodedClips
from scripts.bench.harness import Side, SideResult
from scripts.bench.hs_side import built_like_train, check_same_init, run_headstart
from scripts.bench.peers import CountingCollator, Recipe, run_plain, run_trainer
from scripts.bench.text import SHARED, recipe_overrides


def write_manifests(recordings: Path, out: Path, train_takes: range, eval_takes: range) -> tuple[Path, Path]:
    """``{digit}_{speaker}_{take}.wav`` -> train.jsonl / val.jsonl rows {path, label, duration}."""
    rows: dict[str, list[str]] = {"train": [], "val": []}
    for path in sorted(recordings.glob("*.wav")):
        digit, _, take = path.stem.split("_")
        split = "train" if int(take) in train_takes else "val" if int(take) in eval_takes else None
        if split:
            info = sf.info(str(path))
            rows[split].append(json.dumps({"path": str(path.resolve()), "label": digit, "duration": info.frames / info.samplerate}))
    out.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return out / "train.jsonl", out / "val.jsonl"


class AudioClassifier(nn.Module):
    """waveforms [B, T], lengths [B] (, labels [B]) -> {"logits": [B, C] (, "loss")}."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None, **_: Any
    ) -> dict[str, torch.Tensor]:
        out = self.backbone(waveforms, lengths)
        logits = self.head(out.hidden_states, out.attention_mask)
        result = {"logits": logits}
        if labels is not None:
            result["loss"] = nn.functional.cross_entropy(logits, labels)
        return result


def wave_positions(batch: dict[str, Any]) -> tuple[int, int]:
    """(real, padded total) samples of an audio batch."""
    return int(batch["lengths"].sum()), batch["waveforms"].numel()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def comparison(quick: bool, steps: int | None) -> tuple[list[Side], dict[str, Any]]:
    """headstart vs Trainer (length-grouped by a given sampler) vs plain loop."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    train_manifest, val_manifest = write_manifests(
        SHARED / "audio" / "fsdd" / "recordings", Path(tempfile.mkdtemp(prefix="bench_fsdd_")), range(10, 50), range(5, 10)
    )
    recipe = Recipe(batch_size=32, lr=1e-3, epochs=1 if quick else 10, max_steps=steps or -1)
    overrides = [
        "task=audio_classification",
        "model=wav2vec2",
        "model.preset=tiny",
        "model.freeze_feature_encoder=false",
        "model.mask_time_prob=0",
        "data.source=manifest",
        f"data.train_path={train_manifest}",
        f"data.val_path={val_manifest}",
        *recipe_overrides(recipe, None),
    ]
    built = built_like_train(overrides)
    check_same_init(built, built_like_train(overrides))
    built.datamodule.setup("fit")
    train, evaluate = built.datamodule.train_set, built.datamodule.val_set
    train.cache = evaluate.cache = DecodedClips(0)  # the peers decode at every read (module docstring)
    init = AudioClassifier(copy.deepcopy(built.task.backbone), copy.deepcopy(built.task.head))
    init_state = copy.deepcopy(init.state_dict())
    collate = built.datamodule.collate
    lengths = train.lengths()

    def fresh() -> nn.Module:
        model = copy.deepcopy(init)
        model.load_state_dict(init_state)
        return model

    def plain() -> SideResult:
        torch.manual_seed(recipe.seed)
        sampler = LengthGroupedSampler(recipe.batch_size, lengths=lengths, generator=torch.Generator().manual_seed(recipe.seed))
        return run_plain(fresh(), train, evaluate, CountingCollator(collate, wave_positions), recipe, sampler, accuracy)

    sides = [
        Side("headstart", lambda: run_headstart(overrides, "val/acc")),
        Side(
            "trainer_length_sampler",
            lambda: run_trainer(fresh(), train, evaluate, CountingCollator(collate, wave_positions), recipe, accuracy, lengths=lengths),
        ),
        Side("plain_loop", plain),
    ]
    settings = {
        "overrides": overrides,
        "recipe": vars(recipe),
        "metric": "val/acc",
        "train_examples": len(train),
        "eval_examples": len(evaluate),
    }
    return sides, settings
