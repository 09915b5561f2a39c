"""Token classification (NER): encoder -> per-token linear head -> CE over labelled sub-tokens.

Sub-tokens that carry no word label (continuations, specials, padding) have target -100 and
are ignored by the loss and the metric; the metric is entity-level (seqeval-style precision,
recall and F1, with F1 per entity type), never token accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from headstart.metrics.entity_f1 import EntityF1, get_entities
from headstart.tasks.base import Task
from headstart.tasks.encoder_text import encode, log_padding, wandb_table
from headstart.tasks.export import HFExport, encoder_task_model, keep_checkpoint_head, require_layout, with_prefix


def word_predictions(token_preds: list[int], word_ids: list[int | None]) -> dict[int, int]:
    """word index -> the label id predicted on its first sub-token (words cut by truncation are absent)."""
    out: dict[int, int] = {}
    for pred, word in zip(token_preds, word_ids):
        if word is not None and word not in out:
            out[word] = pred
    return out


def entities_with_offsets(
    tags: list[str], word_spans: list[tuple[int, int]], text: str
) -> list[dict[str, Any]]:
    """Entities of one sentence: type, text and character offsets [start, end) into ``text``."""
    out = []
    for kind, first, last in get_entities(tags):
        start, end = word_spans[first][0], word_spans[last][1]
        out.append({"type": kind, "text": text[start:end], "start": start, "end": end})
    return out


class TokenClassificationTask(Task):
    """Batches carry input_ids / attention_mask [B, L], labels [B, L] (-100 ignored), word_ids [B][L].

    head: partial taking (in_features, num_classes). labels: the tag list (from the data);
    scheme: IOB1 / IOB2 / IOBES, how entities are read from tags (from the data).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: nn.Module,
        labels: list[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        scheme: Literal["IOB1", "IOB2", "IOBES"] = "IOB2",
        strict: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.labels = list(labels)
        self.head = head(in_features=backbone.hidden_size, num_classes=len(self.labels))
        self.kept_head = keep_checkpoint_head("token_classification", backbone, self.head, "ForTokenClassification",
                                              {"classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"},
                                              self.labels, per_label=("classifier.weight", "classifier.bias"))
        self.loss_fn = loss
        self.val_metric = EntityF1(self.labels, scheme=scheme, strict=strict)
        self.test_metric = EntityF1(self.labels, scheme=scheme, strict=strict)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """input_ids [B, L] (+ masks) -> logits [B, L, C]."""
        return self.head(encode(self.backbone, batch).hidden_states)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``AutoModelForTokenClassification``: the encoder, dropout, one linear layer per token
        (this head), ``id2label`` the data's tags in the head's order."""
        from transformers import AutoModelForTokenClassification

        target = "AutoModelForTokenClassification"
        require_layout(self.head, {"dropout": nn.Dropout, "classifier": nn.Linear}, "token_classification", target)
        if validate_only:
            return None
        head = with_prefix("classifier", self.head.classifier.state_dict())
        model = encoder_task_model(AutoModelForTokenClassification, self.backbone.require_model(), head, self.labels, target)
        return HFExport(model, [self.backbone.tokenizer], "token-classification")

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss_fn(logits.flatten(0, 1), labels.flatten())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._loss(self(batch), batch["labels"])
        self.log_terms("train", terms, batch_size=batch["input_ids"].shape[0])
        log_padding(self, batch, "train")
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metric)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metric)

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: EntityF1) -> dict[str, torch.Tensor]:
        logits = self(batch)
        self.log_terms(stage, self._loss(logits, batch["labels"]), batch_size=logits.shape[0])
        preds = logits.argmax(-1)
        metric.update(preds, batch["labels"])
        return {"preds": preds.detach()}

    def on_validation_epoch_end(self) -> None:
        self._log_entity_scores("val", self.val_metric)

    def on_test_epoch_end(self) -> None:
        self._log_entity_scores("test", self.test_metric)

    def _log_entity_scores(self, stage: str, metric: EntityF1) -> None:
        """precision / recall / f1 and f1_<TYPE> (counts are summed over ranks inside compute)."""
        scores = metric.compute()
        self.log_dict({f"{stage}/{name}": value for name, value in scores.items()}, sync_dist=False)
        metric.reset()

    def sentence_entities(self, preds: torch.Tensor, batch: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Per example the predicted entities with character offsets into its text."""
        out = []
        for row, word_ids, spans, text in zip(preds.tolist(), batch["word_ids"], batch["word_spans"], batch["text"]):
            by_word = word_predictions(row, word_ids)
            tags = [self.labels[by_word[w]] if w in by_word else "O" for w in range(len(spans))]
            out.append(entities_with_offsets(tags, spans, text))
        return out

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input: its text and entities (type, text, char start/end)."""
        preds = self(batch).argmax(-1).cpu()
        return [
            {"input": where, "text": text, "entities": entities}
            for where, text, entities in zip(batch["where"], batch["text"], self.sentence_entities(preds, batch))
        ]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """index.html with every text's entities highlighted and labelled, and a PNG per input."""
        from headstart.viz.text_pages import spans_page

        return spans_page(records, out_dir, "named entities", lambda r: r["text"],
                          lambda r: [(e["start"], e["end"], e["type"]) for e in r["entities"]])

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A table of validation sentences with predicted and gold entities marked inline: [Anna Berg|PER]."""
        n = min(max_items, len(batch["text"]))
        preds = outputs["preds"][:n].cpu()
        sliced = {key: batch[key][:n] for key in ("word_ids", "word_spans", "text")}
        predicted = self.sentence_entities(preds, sliced)
        gold = self.sentence_entities(batch["labels"][:n].clamp(min=0).cpu(), sliced)
        rows = [[text, mark_inline(text, p), mark_inline(text, g)] for text, p, g in zip(sliced["text"], predicted, gold)]
        return {"val/examples": wandb_table(["text", "prediction", "target"], rows)}


def mark_inline(text: str, entities: list[dict[str, Any]]) -> str:
    """'Anna Berg visited Oslo' -> '[Anna Berg|PER] visited [Oslo|LOC]'."""
    out, last = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        out += [text[last : entity["start"]], f"[{entity['text']}|{entity['type']}]"]
        last = entity["end"]
    return "".join(out + [text[last:]])
