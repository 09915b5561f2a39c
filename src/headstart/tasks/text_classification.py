"""Text classification: encoder -> [CLS] state -> linear head -> CE (or BCE in multi-label mode).

Single texts and text pairs alike: a pair is encoded as ``[CLS] A [SEP] B [SEP]`` with segment
ids (the data side tokenizes it); the head only ever sees the [CLS] state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from headstart.tasks.base import Task
from headstart.tasks.encoder_text import encode, log_padding, wandb_table
from headstart.tasks.export import (
    ExportError,
    HFExport,
    encoder_task_model,
    keep_checkpoint_head,
    require_layout,
    with_prefix,
)

# model_type -> the pooling its transformers sequence-classification class applies
EXPORT_POOLING = {"bert": "pooler", "distilbert": "pre_classifier"}


def resolve_pooling(pooling: str, backbone: nn.Module) -> str:
    """``task.pooling`` with ``auto`` resolved from the encoder (see :class:`TextClassificationTask`)."""
    if pooling not in ("auto", "pooler", "pre_classifier", "cls"):
        raise ValueError(f"task.pooling={pooling} is not one of auto, pooler, pre_classifier, cls")
    has_pooler = encoder_has_pooler(backbone)
    if pooling == "pooler" and not has_pooler:
        raise ValueError("task.pooling=pooler but the encoder has no pooler (use auto, pre_classifier or cls)")
    if pooling != "auto":
        return pooling
    if backbone.model_config.model_type == "distilbert":
        return "pre_classifier"
    return "pooler" if has_pooler else "cls"


def encoder_has_pooler(backbone: nn.Module) -> bool:
    """Whether the encoder has a pooler; a preset's encoder (built once its tokenizer is trained)
    is built on the meta device to see, which allocates nothing."""
    if getattr(backbone, "model", None) is not None:
        return backbone.pooler_module() is not None
    from transformers import AutoModel

    with torch.device("meta"):
        probe = AutoModel.from_config(backbone.model_config)
    return getattr(probe, "pooler", None) is not None


class TextClassificationTask(Task):
    """Batches carry input_ids / attention_mask [/ token_type_ids] [B, L] and ``labels``:
    [B] class ids, or [B, K] multi-hot floats when ``multi_label``.

    head: partial taking (in_features, num_classes). loss / metrics: single-label (CE; metric
    partials take ``num_classes``); multilabel_loss / multilabel_metrics: used when the data is
    multi-label (BCE; metric partials take ``num_labels``). threshold: probability above which a
    label is predicted in multi-label mode.

    pooling: how the sequence becomes one vector, as transformers' ``*ForSequenceClassification``
    of the family does it. ``pooler``: the encoder's own pooler (BERT, MiniLM: dense + tanh on the
    [CLS] state, pretrained with next-sentence prediction); ``pre_classifier``: the [CLS] state
    through a new dense + ReLU in the head (DistilBERT); ``cls``: the [CLS] state as it is (no
    transformers class computes this; checkpoints trained before ``pooling`` existed used it);
    ``auto``: ``pooler`` when the encoder has one, ``pre_classifier`` for DistilBERT, else ``cls``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: nn.Module,
        metrics: dict[str, Callable[..., Metric]],
        labels: list[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        multi_label: bool = False,
        multilabel_loss: nn.Module | None = None,
        multilabel_metrics: dict[str, Callable[..., Metric]] | None = None,
        threshold: float = 0.5,
        predict_top_k: int = 5,
        pooling: Literal["auto", "pooler", "pre_classifier", "cls"] = "auto",
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.pooling = resolve_pooling(pooling, backbone)
        self.labels = list(labels)
        self.multi_label = multi_label
        num_classes = len(self.labels)
        if num_classes < (1 if multi_label else 2):
            raise ValueError(f"text classification needs at least 2 classes, the data has {self.labels}")
        extra = {"pre_classifier": True} if self.pooling == "pre_classifier" else {}
        self.head = head(in_features=backbone.hidden_size, num_classes=num_classes, **extra)
        names = {"proj.weight": "classifier.weight", "proj.bias": "classifier.bias"}
        if extra:
            names.update({"pre_classifier.weight": "pre_classifier.weight", "pre_classifier.bias": "pre_classifier.bias"})
        family = backbone.model_config.model_type
        fits = None if EXPORT_POOLING.get(family) == self.pooling else f"task.pooling={self.pooling}, its class pools otherwise"
        self.kept_head = keep_checkpoint_head("text_classification", backbone, self.head, "ForSequenceClassification", names,
                                              self.labels, per_label=("proj.weight", "proj.bias"), fits=fits)
        if multi_label:
            if multilabel_loss is None or not multilabel_metrics:
                raise ValueError("multi-label data needs task.multilabel_loss and task.multilabel_metrics")
            self.loss_fn = multilabel_loss
            built = {name: factory(num_labels=num_classes) for name, factory in multilabel_metrics.items()}
        else:
            self.loss_fn = loss
            built = {name: factory(num_classes=num_classes) for name, factory in metrics.items()}
        self.val_metrics = MetricCollection(built, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.threshold = threshold
        self.predict_top_k = min(predict_top_k, num_classes)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """input_ids [B, L] (+ masks) -> logits [B, C]."""
        hidden = encode(self.backbone, batch).hidden_states
        pooled = self.backbone.pooler_module()(hidden) if self.pooling == "pooler" else hidden[:, 0]
        return self.head(pooled)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``AutoModelForSequenceClassification`` for BERT-like encoders (pooler, dropout, classifier)
        and DistilBERT (pre_classifier, ReLU, dropout, classifier): this head under their names;
        ``problem_type`` multi-label for multi-hot data."""
        from transformers import AutoModelForSequenceClassification

        family = self.backbone.model_config.model_type
        target = f"AutoModelForSequenceClassification ({family})"
        if EXPORT_POOLING.get(family) != self.pooling:
            raise ExportError(
                f"task=text_classification: task.pooling={self.pooling} on {family}; {target} pools with "
                f"{EXPORT_POOLING.get(family, 'a head headstart does not convert')}, so this model cannot be exported exactly"
            )
        layout = {"dropout": nn.Dropout, "proj": nn.Linear, **({"pre_classifier": nn.Linear} if self.pooling == "pre_classifier" else {})}
        require_layout(self.head, layout, "text_classification", target)
        if validate_only:
            return None
        head = with_prefix("classifier", self.head.proj.state_dict())
        if self.pooling == "pre_classifier":
            head.update(with_prefix("pre_classifier", self.head.pre_classifier.state_dict()))
        problem = "multi_label_classification" if self.multi_label else "single_label_classification"
        model = encoder_task_model(AutoModelForSequenceClassification, self.backbone.require_model(), head, self.labels, target,
                                   problem_type=problem)
        return HFExport(model, [self.backbone.tokenizer], "text-classification")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.loss_fn(self(batch), batch["labels"])
        self.log_terms("train", terms, batch_size=batch["input_ids"].shape[0])
        log_padding(self, batch, "train")
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> dict[str, torch.Tensor]:
        logits = self(batch)
        self.log_terms(stage, self.loss_fn(logits, batch["labels"]), batch_size=logits.shape[0])
        metrics.update(logits, batch["labels"].long() if self.multi_label else batch["labels"])
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return {"logits": logits.detach()}

    def predicted(self, logits: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per example (label, probability), best first: top-k classes, or labels over threshold."""
        if self.multi_label:
            probs = logits.float().sigmoid().cpu()
            return [
                sorted(((self.labels[i], p) for i, p in enumerate(row.tolist()) if p > self.threshold), key=lambda x: -x[1])
                for row in probs
            ]
        scores, indices = logits.float().softmax(-1).topk(self.predict_top_k, dim=-1)
        return [[(self.labels[i], s) for i, s in zip(idx, sc)] for idx, sc in zip(indices.tolist(), scores.tolist())]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input text: labels with their probabilities, best first."""
        return [
            {"input": where, "text": text, **({"text_pair": pair} if pair is not None else {}),
             "labels": [label for label, _ in pred], "scores": [round(score, 6) for _, score in pred]}
            for where, text, pair, pred in zip(batch["where"], batch["text"], batch["text_pair"], self.predicted(self(batch)))
        ]

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """A PNG per input (its text above a bar chart of its labels) and index.html of them all."""
        from headstart.viz.text_pages import scores_page

        def text(record: dict[str, Any]) -> str:
            pair = record.get("text_pair")
            return record["text"] if pair is None else f"{record['text']}  [SEP]  {pair}"

        empty = f"no label above threshold {self.threshold:g}" if self.multi_label else "no label predicted"
        return scores_page(records, out_dir, "text classification", text, empty)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A table of validation texts with prediction and target."""
        preds = self.predicted(outputs["logits"][:max_items])
        targets = batch["labels"][:max_items].tolist()
        rows = []
        for i, pred in enumerate(preds):
            target = [self.labels[k] for k, v in enumerate(targets[i]) if v > 0] if self.multi_label else self.labels[targets[i]]
            text = batch["text"][i] if batch["text_pair"][i] is None else f"{batch['text'][i]} [SEP] {batch['text_pair'][i]}"
            rows.append([text, ", ".join(f"{label} ({score:.2f})" for label, score in pred[:3]), str(target)])
        return {"val/examples": wandb_table(["text", "prediction", "target"], rows)}
