"""Seq2seq denoising pretraining (BART text infilling + sentence permutation, T5 span corruption).

The data side noises raw token blocks (``headstart.data.noising``); this task only sees
``input_ids`` / ``attention_mask`` (the noised encoder input) and ``labels`` (what the decoder
must write: BART the original block, T5 the sentinel-delimited spans). The backbone is the
library's whole seq2seq LM (``headstart.backbones.hf_lm``); the decoder reads the labels
shifted right and headstart's chunked CE (``LMLoss(shift=False)``) scores its hidden states.

Metrics over every target token of the split: ``val/loss`` (token-mean CE), ``val/perplexity``
(exp of it) and ``val/token_acc`` (teacher-forced argmax == target, pad excluded). Media: a table
of noised inputs, greedy reconstructions and originals. At the end of fit the whole seq2seq
model and its tokenizer are saved in the Hugging Face format in ``<run dir>/pretrained``
(``ExportsPretrained``), so ``model.checkpoint=<run dir>/pretrained`` starts summarization or
translation from it.

predict.py: each input text is given to the encoder as it is (with its special tokens); write
``<mask>`` (BART) or ``<extra_id_0>``, ``<extra_id_1>``... (T5) where text is missing. Records
hold ``input``, ``output`` (the decoded generation, mask/sentinel tokens kept) and, for T5,
``filled`` (the input with each sentinel replaced by the span generated after it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from headstart.losses.lm import lm_loss_sum
from headstart.metrics.generation import TokenPerplexity
from headstart.tasks.base import Task
from headstart.tasks.export import HFExport, language_model, whole_model_kept
from headstart.tasks.pretraining import ExportsPretrained

_SENTINEL = re.compile(r"<extra_id_(\d+)>")


def argmax_in_chunks(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, chunk_size: int = 1024
) -> torch.Tensor:
    """argmax over the vocabulary of ``hidden @ weight.T + bias`` without the full logits.

    hidden: [..., D]; weight: [V, D]; bias: [V] or None -> ids [...] (chunk_size tokens at a time).
    """
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.long, device=hidden.device)
    for start in range(0, flat.shape[0], chunk_size):
        logits = nn.functional.linear(flat[start : start + chunk_size], weight.to(flat.dtype),
                                      None if bias is None else bias.to(flat.dtype))
        out[start : start + chunk_size] = logits.argmax(-1)
    return out.reshape(hidden.shape[:-1])


def fill_sentinels(source: str, output: str) -> str:
    """T5: replace each ``<extra_id_k>`` of ``source`` by the text after ``<extra_id_k>`` in ``output``."""
    pieces = _SENTINEL.split(output)  # text, k, span, k, span...
    spans = {int(pieces[i]): pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}
    return _SENTINEL.sub(lambda m: spans.get(int(m.group(1)), m.group(0)), source)


class DenoisingTask(ExportsPretrained, Task):
    """Batches: input_ids / attention_mask [B, S] (noised), labels [B, T] (-100 on padding).

    loss: ``LMLoss(shift=False)``. generation: ``generate`` settings for media and predict.py
    (greedy by default). media_examples: rows of the validation table.
    vocab_size, pad_token_id, mask_token_id, special_ids, noise: the datamodule's ``info()``
    (the noise settings used, kept in the checkpoint; ``noise["kind"]`` picks T5's output form).
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        generation: dict[str, Any] | None = None,
        media_examples: int = 4,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        mask_token_id: int | None = None,
        special_ids: list[int] | None = None,
        noise: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.kept_head = whole_model_kept(backbone)
        if getattr(backbone, "architecture", "seq2seq") != "seq2seq":
            raise ValueError("task=denoising needs an encoder-decoder model (model=bart or model=t5)")
        self.loss_fn = loss
        self.generation = dict(generation or {})
        self.media_examples = media_examples
        self.vocab_size, self.pad_token_id, self.mask_token_id = vocab_size, pad_token_id, mask_token_id
        self.special_ids = list(special_ids or [])
        self.noise = dict(noise or {})
        self.val_metrics = MetricCollection(
            {"loss": MeanMetric(), "perplexity": TokenPerplexity(), "token_acc": MeanMetric()}, prefix="val/",
            compute_groups=False,
        )
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: decoder hidden states [B, T, D] for labels [B, T]."""
        return self.backbone(input_ids, attention_mask, labels)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        hidden = self(batch["input_ids"], batch["attention_mask"], batch["labels"])
        weight, bias = self.backbone.lm_head()
        terms = self.loss_fn(hidden, weight, batch["labels"], bias)
        self.log_terms("train", {"loss": terms["loss"]}, batch_size=batch["input_ids"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], metrics: MetricCollection) -> dict[str, Any]:
        labels = batch["labels"]
        hidden = self(batch["input_ids"], batch["attention_mask"], labels)
        weight, bias = self.backbone.lm_head()
        chunk = getattr(self.loss_fn, "chunk_size", 1024)
        loss_sum, count = lm_loss_sum(hidden, weight, labels, bias, shift=False, chunk_size=chunk)
        valid = labels != -100
        correct = argmax_in_chunks(hidden, weight, bias, chunk)[valid] == labels[valid]
        metrics["loss"].update(loss_sum / count.clamp(min=1), weight=count)  # weighted: a token mean
        metrics["perplexity"].update(loss_sum, count)
        metrics["token_acc"].update(correct.float())
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"num_tokens": count}

    # ---- generation: media and prediction -------------------------------------------------------
    def _decode(self, ids: torch.Tensor) -> list[str]:
        """Token ids [B, L] -> texts keeping mask/sentinel tokens; pad, bos, eos and -100 dropped."""
        tok = self.backbone.tokenizer
        drop = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, -100}
        return [tok.decode([i for i in row if i not in drop]).strip() for row in ids.tolist()]

    def reconstruct(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int | None = None) -> list[str]:
        settings = dict(self.generation)
        if max_new_tokens is not None:
            settings["max_new_tokens"] = max_new_tokens
        return self._decode(self.backbone.generate(input_ids, attention_mask, **settings))

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A W&B table: noised input, greedy reconstruction, original (a few validation blocks)."""
        import wandb

        n = min(max_items, self.media_examples, batch["input_ids"].shape[0])
        if n == 0:
            return {}
        labels = batch["labels"][:n]
        outputs = self.reconstruct(batch["input_ids"][:n], batch["attention_mask"][:n], int(labels.shape[1]) + 2)
        rows = [[self.current_epoch, noised, out, original]
                for noised, out, original in zip(self._decode(batch["input_ids"][:n]), outputs, self._decode(labels))]
        return {"val/reconstructions": wandb.Table(columns=["epoch", "noised input", "reconstruction", "original"], data=rows)}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input text: {"input", "output"} (+ "filled" for T5 sentinels)."""
        outputs = self.reconstruct(batch["input_ids"], batch["attention_mask"])
        records = []
        for text, out in zip(batch["texts"], outputs):
            record = {"input": text, "output": out}
            if _SENTINEL.search(text):
                record["filled"] = fill_sentinels(text, out)
            records.append(record)
        return records

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """index.html with each noised input beside its reconstruction (and T5's sentinels filled in)."""
        from headstart.viz.text_pages import pairs_page

        columns = [("noised input", lambda r: r["input"]), ("output", lambda r: r["output"])]
        if any("filled" in r for r in records):
            columns.append(("input with the spans filled", lambda r: r.get("filled", "")))
        return pairs_page(records, out_dir, "denoising", columns)

    # ---- export -------------------------------------------------------------------------------
    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """The ``*ForConditionalGeneration`` model itself, generating as the reconstructions do."""
        model = language_model(self.backbone, "denoising", self.generation, validate_only)
        return HFExport(model, [self.backbone.tokenizer], "text2text-generation") if model is not None else None

    def export_pretrained(self, directory: Path) -> None:
        """The whole seq2seq model (encoder, decoder, tied LM head) and its tokenizer, HF format."""
        self.backbone.require_model().save_pretrained(directory)
        self.backbone.tokenizer.save_pretrained(directory)
