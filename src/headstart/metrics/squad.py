"""SQuAD post-processing (windows -> one answer per example) and the official EM / F1.

Post-processing follows transformers' ``utils_qa.postprocess_qa_predictions``: per window the
``n_best`` start and end logits are paired; a pair is valid when both tokens lie in the context
(offset not None), end >= start and the span is at most ``max_answer_length`` tokens; its score
is start + end logit. The example's answer is the best valid span over all its windows. For
SQuAD v2 the null score is the minimum over windows of start[CLS] + end[CLS]; the answer is
empty when null_score - best_span_score > ``null_score_diff_threshold``.

EM / F1 use the official script's normalisation (lowercase, drop punctuation and the articles
a/an/the, collapse whitespace), the max over gold answers, and v2's rule that an unanswerable
question's only gold answer is "". Both are reported in percent, like the official script.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torchmetrics import Metric

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
Offsets = Sequence[tuple[int, int] | None]


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lower, remove punctuation, remove articles, fix whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of normalised answers; when either is empty, 1 if both are, else 0 (v2 rule)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_tokens), num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_example(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) in [0, 1], max over gold answers; golds that normalise to "" count as no-answer."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match_score(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)


@dataclass
class WindowResult:
    """What one window contributes: its null score and its best valid spans (score, char_start, char_end)."""

    null_score: float
    spans: list[tuple[float, int, int]] = field(default_factory=list)


def window_candidates(
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    offsets: Offsets,
    n_best: int = 20,
    max_answer_length: int = 30,
    cls_index: int = 0,
) -> WindowResult:
    """Valid spans of one window from its n_best start x n_best end logits, best first.

    start_logits, end_logits: [L] (L may exceed len(offsets) after padding: those tokens are invalid).
    offsets: [L'] char offsets into the context, None outside it.
    """
    start = torch.as_tensor(start_logits, dtype=torch.float32)
    end = torch.as_tensor(end_logits, dtype=torch.float32)
    k = min(n_best, start.numel())
    starts = torch.topk(start, k).indices.tolist()
    ends = torch.topk(end, k).indices.tolist()
    start_l, end_l = start.tolist(), end.tolist()
    spans = []
    for s in starts:
        for e in ends:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            spans.append((start_l[s] + end_l[e], int(offsets[s][0]), int(offsets[e][1])))
    spans.sort(key=lambda span: -span[0])
    return WindowResult(null_score=start_l[cls_index] + end_l[cls_index], spans=spans[:n_best])


def select_answer(
    windows: Sequence[WindowResult],
    context: str,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> str:
    """The example's answer text from all its windows ("" for no answer)."""
    spans = [span for w in windows for span in w.spans]
    if not spans:
        return ""
    score, start_char, end_char = max(spans, key=lambda span: span[0])
    if version_2_with_negative:
        null_score = min(w.null_score for w in windows)
        if null_score - score > null_score_diff_threshold:
            return ""
    return context[start_char:end_char]


def _offsets_list(offsets: Offsets | torch.Tensor) -> list[tuple[int, int] | None]:
    """A window's offsets as a list; a tensor [L, 2] marks non-context tokens with negative values."""
    if isinstance(offsets, torch.Tensor):
        return [None if int(s) < 0 else (int(s), int(e)) for s, e in offsets.tolist()]
    return [None if o is None else (int(o[0]), int(o[1])) for o in offsets]


class SquadMetric(Metric):
    """Exact match and F1 over a whole evaluation split, from per-window logits.

    Windows of one example may be spread over batches and DDP ranks, so each rank keeps its windows'
    candidate spans (a few per window, not the logits) keyed by (example_id, window_index); at
    ``compute`` they are gathered from all ranks with ``all_gather_object`` and de-duplicated by that
    key (DistributedSampler pads by repeating windows). Only the examples seen are scored, so a
    Lightning sanity check over two batches gives a number over those examples. Call ``compute`` on
    every rank, then ``reset``. ``forward`` is not supported (answers need all windows).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        n_best: int = 20,
        max_answer_length: int = 30,
        version_2_with_negative: bool = False,
        null_score_diff_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        self.version_2_with_negative = version_2_with_negative
        self.null_score_diff_threshold = null_score_diff_threshold
        self._windows: dict[tuple[Hashable, int], WindowResult] = {}
        self._examples: dict[Hashable, tuple[str, list[str]]] = {}

    def update(
        self,
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        offset_mapping: Sequence[Offsets] | torch.Tensor,
        example_ids: Sequence[Hashable] | torch.Tensor,
        window_index: Sequence[int] | torch.Tensor,
        contexts: Sequence[str],
        answers: Sequence[Sequence[str]],
        cls_index: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        """start_logits, end_logits: [B, L]; offset_mapping: [B][L] (None outside context) or [B, L, 2]
        (negative outside); example_ids, window_index, cls_index: [B]; contexts: [B] the window's
        example context; answers: [B] the example's gold answer texts (empty for unanswerable).
        """
        # one host transfer per batch: [B, L] floats are small, and spans need the offsets on the host
        start_logits, end_logits = start_logits.detach().float().cpu(), end_logits.detach().float().cpu()
        ids = example_ids.tolist() if isinstance(example_ids, torch.Tensor) else list(example_ids)
        windows = window_index.tolist() if isinstance(window_index, torch.Tensor) else list(window_index)
        cls = [0] * len(ids) if cls_index is None else [int(c) for c in cls_index]
        for b, example_id in enumerate(ids):
            self._windows[(example_id, int(windows[b]))] = window_candidates(
                start_logits[b], end_logits[b], _offsets_list(offset_mapping[b]),
                self.n_best, self.max_answer_length, cls[b],
            )  # fmt: skip
            self._examples[example_id] = (contexts[b], list(answers[b]))

    def _gathered(self) -> tuple[dict, dict]:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self._windows, self._examples
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self._windows, self._examples))
        windows: dict = {}
        examples: dict = {}
        for part_windows, part_examples in parts:
            for key, value in part_windows.items():
                windows.setdefault(key, value)  # a repeated (padded) window is the same window
            examples.update(part_examples)
        return windows, examples

    def predictions(self) -> dict[Hashable, str]:
        """example_id -> predicted answer text, over all ranks (collective: call on every rank)."""
        return self._select(*self._gathered())

    def _select(self, windows: dict, examples: dict) -> dict[Hashable, str]:
        by_example: dict[Hashable, list[WindowResult]] = collections.defaultdict(list)
        for (example_id, _), result in windows.items():
            by_example[example_id].append(result)
        return {
            example_id: select_answer(
                results, examples[example_id][0], self.version_2_with_negative, self.null_score_diff_threshold
            )
            for example_id, results in by_example.items()
        }

    def compute(self) -> dict[str, torch.Tensor]:
        """{"exact_match", "f1"} in percent over the examples seen on all ranks (0 when none)."""
        windows, examples = self._gathered()
        predictions = self._select(windows, examples)
        if not predictions:
            return {"exact_match": torch.tensor(0.0), "f1": torch.tensor(0.0)}
        scores = [score_example(text, examples[example_id][1]) for example_id, text in predictions.items()]
        em = 100.0 * sum(s[0] for s in scores) / len(scores)
        f1 = 100.0 * sum(s[1] for s in scores) / len(scores)
        return {"exact_match": torch.tensor(em), "f1": torch.tensor(f1)}

    def reset(self) -> None:
        super().reset()
        self._windows = {}
        self._examples = {}

    def forward(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise NotImplementedError("SquadMetric needs all windows of an example: use update() then compute()")
