"""Causal language modelling (GPT-2): packed blocks -> LM model -> shifted CE; perplexity; samples.

The backbone is the library's whole LM model with its tied head (``headstart.backbones.hf_lm``);
the loss is headstart's chunked CE over hidden states and head weight. ``val/perplexity`` is
exp of the mean token loss over every evaluated token of the split. Each validation epoch,
samples are generated from fixed ``prompts`` with every strategy in ``sampling`` (greedy,
top-k, top-p, temperature, beam: transformers ``generate`` settings) and written to
``<run dir>/samples/epoch<NNN>.jsonl`` and, with a W&B logger, a table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MetricCollection

from headstart.losses.lm import lm_loss_sum
from headstart.metrics.generation import TokenPerplexity
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, language_model, whole_model_kept


class TextGenerationTask(Task):
    """Batches carry ``input_ids``, ``labels``, ``attention_mask`` [B, T] (packed blocks).

    loss: ``LMLoss(shift=True)`` (hidden states, head weight, labels) -> {"loss", ...}.
    prompts: fixed prompts for the per-epoch samples (an EOS is put before each, as before a
    document in training). generation: settings shared by every strategy (max_new_tokens...).
    sampling: strategy name -> generate settings (do_sample, top_k, top_p, temperature, num_beams).
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        prompts: list[str] | None = None,
        generation: dict[str, Any] | None = None,
        sampling: dict[str, dict[str, Any]] | None = None,
        predict_strategy: str = "greedy",
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.loss_fn = loss
        self.kept_head = whole_model_kept(backbone)
        self.prompts = list(prompts or [])
        self.generation = dict(generation or {})
        self.sampling = {name: dict(settings or {}) for name, settings in (sampling or {}).items()}
        if predict_strategy not in self.sampling and predict_strategy != "greedy":
            raise ValueError(f"task.predict_strategy={predict_strategy} is not one of {sorted(self.sampling)}")
        self.predict_strategy = predict_strategy
        self.val_metrics = MetricCollection({"perplexity": TokenPerplexity()}, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.samples: list[dict[str, Any]] = []
        self._samples_epoch = -1

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, T] -> last hidden states [B, T, D]."""
        return self.backbone(input_ids, attention_mask)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        hidden = self(batch["input_ids"], batch["attention_mask"])
        weight, bias = self.backbone.lm_head()
        terms = self.loss_fn(hidden, weight, batch["labels"], bias)
        self.log_terms("train", {"loss": terms["loss"]}, batch_size=batch["input_ids"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, Any]:
        hidden = self(batch["input_ids"], batch["attention_mask"])
        weight, bias = self.backbone.lm_head()
        loss_sum, count = lm_loss_sum(hidden, weight, batch["labels"], bias, shift=True, chunk_size=self.loss_fn.chunk_size)
        metrics["perplexity"].update(loss_sum, count)
        self.log(f"{stage}/loss", loss_sum / count.clamp(min=1), on_epoch=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"num_tokens": count}

    # ---- samples from fixed prompts -------------------------------------------------------------
    def generate_texts(self, prompts: list[str], settings: dict[str, Any]) -> list[str]:
        """Continuations of ``prompts`` (one batch, left-padded, EOS before each prompt)."""
        tokenizer = self.backbone.tokenizer
        encoded = tokenizer(
            [tokenizer.eos_token + p for p in prompts], add_special_tokens=False, padding=True,
            padding_side="left", return_tensors="pt",
        ).to(self.device)
        out = self.backbone.generate(encoded["input_ids"], encoded["attention_mask"], **{**self.generation, **settings})
        return tokenizer.batch_decode(out, skip_special_tokens=True)

    def make_samples(self) -> list[dict[str, Any]]:
        """One row per (strategy, prompt), generated once per validation epoch."""
        if self._samples_epoch == self.current_epoch or not self.prompts:
            return self.samples
        rows = []
        strategies = self.sampling or {"greedy": {}}
        for name, settings in strategies.items():
            for prompt, text in zip(self.prompts, self.generate_texts(self.prompts, settings)):
                rows.append({"epoch": self.current_epoch, "strategy": name, "prompt": prompt, "generation": text})
        self.samples, self._samples_epoch = rows, self.current_epoch
        return rows

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self.prompts or not self.trainer.is_global_zero:
            return
        rows = self.make_samples()
        folder = Path(self.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"epoch{self.current_epoch:03d}.jsonl").open("w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        import wandb

        rows = self.make_samples()
        if not rows:
            return {}
        return {"val/samples": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])}

    # ---- prediction ---------------------------------------------------------------------------
    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """The causal LM itself (``GPT2LMHeadModel``...) with predict.py's strategy as its generation config."""
        settings = {**self.generation, **self.sampling.get(self.predict_strategy, {})}
        model = language_model(self.backbone, "text_generation", settings, validate_only)
        return HFExport(model, [self.backbone.tokenizer], "text-generation") if model is not None else None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per prompt: {"input", "generation"} with the ``predict_strategy`` settings."""
        settings = {**self.generation, **self.sampling.get(self.predict_strategy, {})}
        out = self.backbone.generate(batch["input_ids"], batch["attention_mask"], **settings)
        texts = self.backbone.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [{"input": prompt, "generation": text} for prompt, text in zip(batch["texts"], texts)]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """index.html with each prompt beside its generation, and a PNG per prompt."""
        from headstart.viz.text_pages import pairs_page

        columns = [("prompt", lambda r: r["input"]), ("generation", lambda r: r["generation"])]
        return pairs_page(records, out_dir, "text generation", columns)
