"""wav2vec 2.0 self-supervised pretraining: mask latent spans, pick the true quantized latent.

waveform -> conv feature encoder -> (layer norm) -> quantizer -> project_q: targets q_t
                                 -> projection -> masked spans := mask embedding -> transformer
                                 -> project_hid: predictions c_t
Loss: contrastive CE of c_t against q_t and K distractors (other masked steps of the same
utterance), codebook diversity, feature penalty (losses/contrastive.py). At fit end the backbone,
quantizer and projections are written as a Hugging Face ``Wav2Vec2ForPreTraining`` directory in
``<run dir>/pretrained``: ``model.checkpoint=<that dir>`` starts any wav2vec2 task from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric

from headstart.losses.contrastive import contrastive_logits, sample_negatives
from headstart.ops.span_mask import span_mask
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, say
from headstart.tasks.pretraining import ExportsPretrained

HEAD_KEYS = {"num_codevector_groups": "num_groups", "num_codevectors_per_group": "num_vars", "codevector_dim": "codevector_dim"}


class AudioPretrainingTask(ExportsPretrained, Task):
    """Batches carry ``waveforms`` [B, T] and ``lengths`` [B] (no labels).

    quantizer: partial taking ``in_features`` (the conv features' size) -> GumbelVectorQuantizer.
    loss: Wav2Vec2ContrastiveLoss. mask_prob, mask_length: time-span masking of the latent frames
    (about mask_prob * L / mask_length spans per utterance, overlapping). num_negatives: K, clipped
    to the most masked steps a batch of that many frames can hold. logit_temperature: cosine
    similarity is divided by it. proj_dim: size of the space c_t and q_t are compared in.
    feature_grad_mult: gradient scale into the conv feature encoder (0 freezes it).
    feature_dropout: dropout on the quantizer input (HF's feat_quantizer_dropout).
    init_head_from_checkpoint: a Wav2Vec2ForPreTraining checkpoint's quantizer and projections
    start the head (continued pretraining); its sizes must match ``quantizer``/``proj_dim``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        quantizer: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        mask_prob: float = 0.65,
        mask_length: int = 10,
        num_negatives: int = 100,
        logit_temperature: float = 0.1,
        proj_dim: int = 256,
        feature_grad_mult: float = 0.1,
        feature_dropout: float = 0.0,
        init_head_from_checkpoint: bool = True,
        val_seed: int = 0,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.mask_prob, self.mask_length = mask_prob, mask_length
        self.num_negatives, self.logit_temperature = num_negatives, logit_temperature
        self.feature_grad_mult, self.val_seed = feature_grad_mult, val_seed
        feature_size = backbone.model.encoder.feature_projection.projection.in_features
        self.quantizer = quantizer(in_features=feature_size)
        self.project_q = nn.Linear(self.quantizer.codevectors.shape[-1] * self.quantizer.num_groups, proj_dim)
        self.project_hid = nn.Linear(backbone.hidden_size, proj_dim)
        self.dropout_features = nn.Dropout(feature_dropout)
        self.loss_fn = loss
        backbone.ensure_mask_embedding()
        # Pretraining trains the conv encoder too (scaled by feature_grad_mult), whatever fine-tuning wants.
        backbone.freeze_feature_encoder = feature_grad_mult == 0
        backbone.freeze(False)
        if init_head_from_checkpoint:
            state = backbone.pretraining_head_state()
            self._load_head(state, proj_dim)
            if state is not None:
                self.kept_head = say(f"model.checkpoint={backbone.checkpoint}: kept its Wav2Vec2ForPreTraining quantizer and projections")
        self.val_metrics = nn.ModuleDict({"contrastive_loss": MeanMetric(), "contrastive_acc": MeanMetric()})
        self.test_metrics = nn.ModuleDict({"contrastive_loss": MeanMetric(), "contrastive_acc": MeanMetric()})

    def _load_head(self, state: dict[str, Any] | None, proj_dim: int) -> None:
        if state is None:
            return
        ours = {"num_codevector_groups": self.quantizer.num_groups, "num_codevectors_per_group": self.quantizer.num_vars,
                "codevector_dim": self.project_q.in_features, "proj_codevector_dim": proj_dim}  # fmt: skip
        differ = {k: v for k, v in state["config"].items() if ours.get(k) != v}
        if differ:
            keys = {**{k: f"task.quantizer.{v}" for k, v in HEAD_KEYS.items()}, "proj_codevector_dim": "task.proj_dim"}
            fix = " ".join(f"{keys[k]}={v}" for k, v in differ.items())
            raise ValueError(
                f"the checkpoint's quantizer/projections have other sizes; set {fix} (or task.init_head_from_checkpoint=false)"
            )
        head = nn.ModuleDict({"quantizer": self.quantizer, "project_q": self.project_q, "project_hid": self.project_hid})
        head.load_state_dict(state["state_dict"])

    # ---- the objective ----------------------------------------------------------------------------
    def num_distractors(self, frames: int) -> int:
        """K clipped to (most masked steps ``span_mask`` can make in ``frames`` frames) - 1: static, no host sync."""
        most = min(frames, (int(self.mask_prob * frames / self.mask_length) + 1) * self.mask_length)
        return max(1, min(self.num_negatives, most - 1))

    def objective(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """waveforms [B, T], lengths [B] -> (loss terms, {"mask" [B, F], "codes" [B, F, G], "ranked_first" [B, F]})."""
        frame_lengths = self.backbone.output_lengths(lengths)
        frames = int(self.backbone.output_lengths(torch.tensor([waveforms.shape[1]]))[0])
        mask = span_mask(frame_lengths, frames, self.mask_prob, self.mask_length)
        negatives = sample_negatives(mask, self.num_distractors(frames))
        return self.contrastive_terms(waveforms, lengths, mask, negatives)

    def contrastive_terms(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The objective for given masks [B, F] bool and distractor indices [B, F, K] (parity tests)."""
        out = self.backbone.encode_masked(waveforms, lengths, mask, self.feature_grad_mult)
        quantized = self.quantizer(self.dropout_features(out.normed), mask)
        targets = self.project_q(quantized.codevectors.to(self.project_q.weight.dtype))
        logits = contrastive_logits(self.project_hid(out.hidden_states), targets, negatives, self.logit_temperature)
        penalty = out.features.float().pow(2)[out.valid].mean()
        # transformers: soft-code perplexity in training, hard picks in evaluation
        perplexity = quantized.prob_perplexity if self.training else quantized.code_perplexity
        terms = self.loss_fn(logits, mask, perplexity, self.quantizer.num_codevectors, penalty)
        terms["code_perplexity"], terms["prob_perplexity"] = quantized.code_perplexity, quantized.prob_perplexity
        extras = {"mask": mask, "codes": quantized.codes, "ranked_first": logits.argmax(0) == 0, "lengths": out.lengths,
                  "best": logits.argmax(0), "negatives": negatives}  # fmt: skip
        return terms, extras

    # ---- steps --------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.backbone.update_freeze(self.global_step)
        self.quantizer.set_step(self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["lengths"].numel() == 0:  # every clip of the batch was skipped as bad input
            return None
        terms, _ = self.objective(batch["waveforms"], batch["lengths"])
        size = batch["lengths"].shape[0]
        self.log_terms("train", {k: v for k, v in terms.items() if k != "num_masked"}, batch_size=size)
        self.log("train/gumbel_temperature", self.quantizer.temperature, on_step=True, batch_size=size)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._evaluate(batch, batch_idx, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str, metrics: nn.ModuleDict) -> dict[str, torch.Tensor] | None:
        if batch["lengths"].numel() == 0:
            return None
        # the same masks and distractors every evaluation, so epochs compare
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.val_seed * 100003 + batch_idx)
            terms, extras = self.objective(batch["waveforms"], batch["lengths"])
        size = batch["lengths"].shape[0]
        self.log_terms(
            stage, {k: terms[k] for k in ("loss", "diversity_loss", "code_perplexity", "prob_perplexity", "feature_penalty")}, size
        )
        for name in ("contrastive_loss", "contrastive_acc"):  # per masked step, over the whole split
            metrics[name].update(terms[name].detach(), weight=terms["num_masked"])
            self.log(f"{stage}/{name}", metrics[name], on_step=False, on_epoch=True, batch_size=size)
        return {key: value.detach() for key, value in extras.items()}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per file: its quantized code ids per frame ([G] ids every frame_stride samples)."""
        if not batch["paths"]:
            return []
        out = self.backbone.encode_masked(batch["waveforms"], batch["lengths"], None)
        codes = self.quantizer(out.normed).codes  # [N, F, G]
        per_file: list[list[list[int]]] = [[] for _ in batch["paths"]]
        for owner, chunk_codes, n in zip(batch["owners"].tolist(), codes.cpu().tolist(), out.lengths.tolist()):
            per_file[owner].extend(chunk_codes[:n])
        seconds = self.backbone.frame_stride / self.backbone.sample_rate
        return [{"input": path, "frame_seconds": seconds, "codes": c} for path, c in zip(batch["paths"], per_file)]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """One PNG per file: waveform and log-mel spectrogram above its code id per frame and group."""
        from headstart.viz.audio import codes_png
        from headstart.viz.figure import draw_each, file_stem

        def draw(i: int, record: dict[str, Any], out: Path) -> list[Path]:
            png = out / f"{file_stem(i, record['input'])}.png"
            return [codes_png(png, record["input"], record["codes"], record["frame_seconds"], self.quantizer.num_vars)]

        return draw_each(records, out_dir, draw)

    # ---- media and export ---------------------------------------------------------------------------
    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        from headstart.viz.codebook import codebook_media

        return codebook_media(batch, outputs, self.quantizer.num_vars, self.backbone.sample_rate, max_items)

    def pretraining_head(self) -> dict[str, Any]:
        """The ``Wav2Vec2ForPreTraining`` config keys and weights of quantizer / project_q / project_hid."""
        head = {f"{name}.{key}": value for name in ("quantizer", "project_q", "project_hid")
                for key, value in getattr(self, name).state_dict().items()}  # fmt: skip
        config = {
            "num_codevector_groups": self.quantizer.num_groups, "num_codevectors_per_group": self.quantizer.num_vars,
            "codevector_dim": self.project_q.in_features, "proj_codevector_dim": self.project_q.out_features,
            "num_negatives": self.num_negatives, "contrastive_logits_temperature": self.logit_temperature,
            "diversity_loss_weight": self.loss_fn.diversity_weight, "feat_quantizer_dropout": self.dropout_features.p,
        }  # fmt: skip
        return {"config": config, "state_dict": head}

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``Wav2Vec2ForPreTraining`` (the backbone under ``wav2vec2.`` and the quantizer and
        projections) and its feature extractor: what ``<run>/pretrained`` holds."""
        if validate_only:
            return None
        from headstart.backbones import wav2vec2_io

        model, extractor = wav2vec2_io.pretraining_model(self.backbone, self.pretraining_head())
        return HFExport(model.eval(), [extractor], "feature-extraction")

    def export_pretrained(self, directory: Path) -> None:
        """``Wav2Vec2ForPreTraining`` layout: backbone under ``wav2vec2.``, plus quantizer / project_q / project_hid."""
        self.backbone.save_pretrained(directory, pretraining_head=self.pretraining_head())
