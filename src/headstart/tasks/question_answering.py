"""Extractive question answering: encoder -> span head (start / end logits per token) -> CE.

Post-processing (n-best spans per window, valid spans inside the context only, best over all
windows of an example, SQuAD v2 null score) is :mod:`headstart.metrics.squad`; the SQuAD
metric is computed over the whole evaluation split at epoch end, on every rank.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from headstart.metrics.squad import SquadMetric, WindowResult, window_candidates
from headstart.tasks.base import Task
from headstart.tasks.encoder_text import encode, log_padding, wandb_table
from headstart.tasks.export import HFExport, encoder_task_model, keep_checkpoint_head, require_layout, with_prefix


def best_answer(
    windows: list[WindowResult], context: str, version_2_with_negative: bool, null_score_diff_threshold: float
) -> dict[str, Any]:
    """The best valid span over all windows: {"answer", "start", "end", "score"} (score: start + end
    logit; for v2 an empty answer when the null score wins, scored by the null score)."""
    spans = [span for w in windows for span in w.spans]
    null = min(w.null_score for w in windows) if windows else 0.0
    if not spans or (version_2_with_negative and null - max(s[0] for s in spans) > null_score_diff_threshold):
        return {"answer": "", "start": None, "end": None, "score": round(null, 4)}
    score, start, end = max(spans, key=lambda span: span[0])
    return {"answer": context[start:end], "start": start, "end": end, "score": round(score, 4)}


class QuestionAnsweringTask(Task):
    """Batches are windows: input_ids / attention_mask [/ token_type_ids] [B, L], start/end_positions
    [B], and per window offset_mapping, example_id, window_index, cls_index, context, answers.

    head: partial taking ``in_features`` -> (start_logits, end_logits). n_best, max_answer_length:
    post-processing limits. version_2_with_negative (from the data): allow "no answer";
    null_score_diff_threshold: how much the null score must beat the best span to answer "".
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr: float | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        version_2_with_negative: bool = False,
        n_best: int = 20,
        max_answer_length: int = 30,
        null_score_diff_threshold: float = 0.0,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, backbone_lr, lr_interval)
        self.head = head(in_features=backbone.hidden_size)
        self.kept_head = keep_checkpoint_head("question_answering", backbone, self.head, "ForQuestionAnswering",
                                              {"qa_outputs.weight": "qa_outputs.weight", "qa_outputs.bias": "qa_outputs.bias"}, None)
        self.loss_fn = loss
        self.post = dict(n_best=n_best, max_answer_length=max_answer_length)
        self.version_2_with_negative = version_2_with_negative
        self.null_score_diff_threshold = null_score_diff_threshold
        metric = dict(self.post, version_2_with_negative=version_2_with_negative, null_score_diff_threshold=null_score_diff_threshold)
        self.val_metric = SquadMetric(**metric)
        self.test_metric = SquadMetric(**metric)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids [B, L] (+ masks) -> (start_logits [B, L], end_logits [B, L])."""
        return self.head(encode(self.backbone, batch).hidden_states)

    def hf_export(self, validate_only: bool = False) -> HFExport | None:
        """``AutoModelForQuestionAnswering``: the encoder and one linear layer to start / end logits."""
        from transformers import AutoModelForQuestionAnswering

        target = "AutoModelForQuestionAnswering"
        require_layout(self.head, {"dropout": nn.Dropout, "qa_outputs": nn.Linear}, "question_answering", target)
        if validate_only:
            return None
        head = with_prefix("qa_outputs", self.head.qa_outputs.state_dict())
        model = encoder_task_model(AutoModelForQuestionAnswering, self.backbone.require_model(), head, None, target)
        return HFExport(model, [self.backbone.tokenizer], "question-answering")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.loss_fn(*self(batch), batch["start_positions"], batch["end_positions"])
        self.log_terms("train", terms, batch_size=batch["input_ids"].shape[0])
        log_padding(self, batch, "train")
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val", self.val_metric)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test", self.test_metric)

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: SquadMetric) -> dict[str, torch.Tensor]:
        start, end = self(batch)
        terms = self.loss_fn(start, end, batch["start_positions"], batch["end_positions"])
        self.log_terms(stage, terms, batch_size=start.shape[0])
        metric.update(start, end, batch["offset_mapping"], batch["example_id"], batch["window_index"],
                      batch["context"], batch["answers"], batch["cls_index"])
        return {"start_logits": start.detach(), "end_logits": end.detach()}

    def on_validation_epoch_end(self) -> None:
        self._log_squad("val", self.val_metric)

    def on_test_epoch_end(self) -> None:
        self._log_squad("test", self.test_metric)

    def _log_squad(self, stage: str, metric: SquadMetric) -> None:
        """EM / F1 over every example seen (gathered from all ranks inside compute), then reset."""
        scores = metric.compute()
        self.log_dict({f"{stage}/{name}": value for name, value in scores.items()}, sync_dist=False)
        metric.reset()

    def answers(self, batch: dict[str, Any], start: torch.Tensor, end: torch.Tensor) -> dict[Any, dict[str, Any]]:
        """example_id -> best answer over the windows of the batch (all of them when predicting)."""
        start, end = start.float().cpu(), end.float().cpu()
        windows: dict[Any, list[WindowResult]] = collections.defaultdict(list)
        contexts = {}
        for b, example_id in enumerate(batch["example_id"]):
            offsets = batch["offset_mapping"][b]
            windows[example_id].append(window_candidates(start[b], end[b], offsets, cls_index=int(batch["cls_index"][b]), **self.post))
            contexts[example_id] = (b, batch["context"][b])
        return {
            example_id: {"row": contexts[example_id][0], **best_answer(results, contexts[example_id][1],
                         self.version_2_with_negative, self.null_score_diff_threshold)}
            for example_id, results in windows.items()
        }

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per question: the answer text, its character span in the context and its score."""
        found = self.answers(batch, *self(batch))
        records = []
        for example_id, answer in found.items():
            row = answer.pop("row")
            records.append({"input": batch["where"][row], "id": example_id, "question": batch["question"][row], **answer,
                            "context": batch["context"][row]})
        return records

    def visualize(self, records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """index.html with each question and its context, the answer span highlighted; a PNG per question."""
        from headstart.viz.text_pages import spans_page

        def headings(r: dict[str, Any]) -> list[tuple[str, str]]:
            answer = f"{r['answer']} (score {r['score']})" if r["start"] is not None else "(no answer)"
            return [("question", r["question"]), ("answer", answer)]

        return spans_page(records, out_dir, "question answering", lambda r: r["context"],
                          lambda r: [] if r["start"] is None else [(r["start"], r["end"], "answer")], headings)

    def media(self, batch: dict[str, Any], outputs: Any, max_items: int) -> dict[str, Any]:
        """A table of questions with a context excerpt around the gold answer, predicted and gold answers."""
        found = self.answers(batch, outputs["start_logits"], outputs["end_logits"])
        rows = []
        for answer in list(found.values())[:max_items]:
            row = answer["row"]
            context, gold = batch["context"][row], batch["answers"][row]
            at = context.find(gold[0]) if gold else 0
            excerpt = context[max(0, at - 150) : at + 150]
            rows.append([batch["question"][row], excerpt, answer["answer"], " | ".join(gold) or "(no answer)"])
        return {"val/examples": wandb_table(["question", "context", "prediction", "target"], rows)}
