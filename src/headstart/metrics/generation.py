"""Metrics of generated text that torchmetrics lacks in a DDP-safe, offline form.

- ``SacreBleu`` / ``SacreChrf``: sacreBLEU's corpus BLEU and chrF (0-100). Each update adds the
  sentences' sufficient statistics (n-gram matches and totals, lengths) to summed states, so the
  corpus score over all batches and ranks equals ``sacrebleu.corpus_score`` of the whole split
  without keeping any text.
- ``Rouge``: rouge-score F-measures (0-100) averaged over examples. ``rougeLsum`` needs one
  sentence per line; torchmetrics splits with nltk's punkt, which downloads data, so sentences
  are split here with a plain punctuation rule instead.
- ``TokenPerplexity``: exp(summed token NLL / token count) over the whole split, not a mean of
  per-batch perplexities.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torchmetrics import Metric

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line (after ``.``, ``!`` or ``?`` followed by white space), for rougeLsum."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


class _SacreStats(Metric):
    """Summed sacreBLEU sufficient statistics; subclasses pick the sacrebleu metric."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_stats: int) -> None:
        super().__init__()
        self.add_state("stats", default=torch.zeros(num_stats, dtype=torch.float64), dist_reduce_fx="sum")
        self.scorer = self._make_scorer()

    def _make_scorer(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def update(self, predictions: Sequence[str], references: Sequence[str]) -> None:
        """predictions, references: one string each per example (one reference per example)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not predictions:
            return
        rows = self.scorer._extract_corpus_statistics(list(predictions), [list(references)])
        self.stats += torch.tensor(rows, dtype=torch.float64).sum(0).to(self.stats.device)

    def compute(self) -> torch.Tensor:
        stats = [int(round(x)) for x in self.stats.tolist()]
        return torch.tensor(float(self.scorer._compute_score_from_stats(stats).score))


class SacreBleu(_SacreStats):
    """Corpus BLEU (sacreBLEU defaults: 13a tokenization, exp smoothing), 0-100."""

    def __init__(self, tokenize: str = "13a", lowercase: bool = False) -> None:
        self.tokenize, self.lowercase = tokenize, lowercase
        super().__init__(num_stats=10)

    def _make_scorer(self):  # type: ignore[no-untyped-def]
        from sacrebleu.metrics import BLEU

        return BLEU(tokenize=self.tokenize, lowercase=self.lowercase)


class SacreChrf(_SacreStats):
    """Corpus chrF (character 6-grams, beta 2; ``word_order=2`` gives chrF++), 0-100."""

    def __init__(self, word_order: int = 0) -> None:
        self.word_order = word_order
        super().__init__(num_stats=3 * (6 + word_order))

    def _make_scorer(self):  # type: ignore[no-untyped-def]
        from sacrebleu.metrics import CHRF

        return CHRF(word_order=self.word_order)


class Rouge(Metric):
    """Mean ROUGE F-measure of one ``key`` (rouge1, rouge2, rougeL, rougeLsum), 0-100.

    Stemming is Porter's (no downloads). Averaging is the plain mean over examples, as
    ``evaluate``'s rouge with ``use_aggregator=False`` then ``mean``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, key: str = "rougeL", use_stemmer: bool = True) -> None:
        super().__init__()
        from rouge_score import rouge_scorer

        self.key = key
        self.scorer = rouge_scorer.RougeScorer([key], use_stemmer=use_stemmer)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], references: Sequence[str]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        total = 0.0
        for prediction, reference in zip(predictions, references):
            if self.key == "rougeLsum":
                prediction, reference = split_sentences(prediction), split_sentences(reference)
            total += self.scorer.score(reference, prediction)[self.key].fmeasure
        self.total += total
        self.count += len(predictions)

    def compute(self) -> torch.Tensor:
        return (100.0 * self.total / self.count.clamp(min=1)).float()


class TokenPerplexity(Metric):
    """exp(sum of token NLL / number of tokens) over everything passed to ``update``."""

    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("loss_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, loss_sum: torch.Tensor, num_tokens: torch.Tensor) -> None:
        """loss_sum: summed (unsmoothed) NLL of a batch; num_tokens: its target-token count."""
        self.loss_sum += loss_sum.detach().to(torch.float64)
        self.tokens += num_tokens.detach().to(torch.float64)

    def compute(self) -> torch.Tensor:
        if self.tokens.item() == 0:
            return torch.tensor(math.nan)
        mean = (self.loss_sum / self.tokens).item()
        return torch.tensor(math.exp(mean) if mean < 700 else math.inf)
