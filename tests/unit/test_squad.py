"""QA windows, span post-processing across windows, official EM/F1, and SquadMetric under DDP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.functional.text import squad as tm_squad

from headstart.data.qa_windows import prepare_qa_features
from headstart.metrics.squad import (
    SquadMetric,
    WindowResult,
    f1_score,
    normalize_answer,
    score_example,
    select_answer,
    window_candidates,
)

# ---------------------------------------------------------------- windows from a real tokenizer

CONTEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    # imported here so the DDP test's spawned workers, which import this module, start faster
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        [CONTEXT, "where is it what comes first"] * 4, vocab_size=300, min_frequency=1,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    )  # fmt: skip
    return BertTokenizerFast(vocab=trainer.get_vocab())


def _char_span(text: str) -> dict:
    return {"text": [text], "answer_start": [CONTEXT.index(text)]}


def test_windows_cover_long_context_with_stride(tokenizer: Any) -> None:
    answers = [_char_span("zeta eta"), _char_span("lambda mu"), {"text": [], "answer_start": []}]
    feats = prepare_qa_features(
        tokenizer, ["  where is it"] * 3, [CONTEXT] * 3, ["a", "b", "c"], answers, max_length=12, doc_stride=3
    )
    n = len(feats["input_ids"])
    # the window layout below assumes one token per word (vocab_size large enough to keep all words)
    assert len(tokenizer(CONTEXT, add_special_tokens=False)["input_ids"]) == len(CONTEXT.split())
    assert n > 3 and all(len(ids) <= 12 for ids in feats["input_ids"])
    for i in range(n):
        example = "abc".index(feats["example_id"][i])
        start, end, cls = feats["start_positions"][i], feats["end_positions"][i], feats["cls_index"][i]
        offsets = feats["offset_mapping"][i]
        assert cls == 0 and feats["input_ids"][i][0] == tokenizer.cls_token_id
        # question tokens ([CLS] where is it [SEP]) carry no offset
        assert offsets[:5] == [None] * 5 and offsets[-1] is None
        if start == cls:
            assert end == cls
            inside = [o for o in offsets if o is not None]
            gold = answers[example]
            if gold["text"]:  # answer not wholly inside this window
                s = gold["answer_start"][0]
                assert not (inside[0][0] <= s and inside[-1][1] >= s + len(gold["text"][0]))
        else:
            assert CONTEXT[offsets[start][0] : offsets[end][1]] == answers[example]["text"][0]
    # every answerable example is found in at least one window, and window_index counts per example
    for example in "ab":
        rows = [i for i in range(n) if feats["example_id"][i] == example]
        assert [feats["window_index"][i] for i in rows] == list(range(len(rows)))
        assert any(feats["start_positions"][i] != 0 for i in rows)
        # 6 context tokens a window, 3 shared: [alpha..zeta], [delta..iota], [eta..mu]
        starts = [feats["start_positions"][i] for i in rows]
        if example == "a":  # "zeta eta" crosses the first window's edge: only the second holds it
            assert len(rows) == 3 and starts[0] == 0 and starts[1] != 0 and starts[2] == 0
        if example == "b":  # "lambda mu": in the last window only
            assert starts[:-1] == [0, 0] and starts[-1] != 0
    assert all(feats["start_positions"][i] == 0 for i in range(n) if feats["example_id"][i] == "c")


# ---------------------------------------------------------------- hand-made windows

CTX = "alpha beta gamma delta"  # alpha 0-5, beta 6-10, gamma 11-16, delta 17-22
W0_OFFSETS = [None, None, None, (0, 5), (6, 10), (11, 16), None]  # [CLS] q [SEP] alpha beta gamma [SEP]
W1_OFFSETS = [None, None, None, (11, 16), (17, 22), None]  # [CLS] q [SEP] gamma delta [SEP]


def _logits(length: int, start: dict[int, float], end: dict[int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    s, e = torch.zeros(length), torch.zeros(length)
    for i, v in start.items():
        s[i] = v
    for i, v in end.items():
        e[i] = v
    return s, e


def _window(offsets: list, start: dict, end: dict, **kw) -> WindowResult:
    s, e = _logits(len(offsets), start, end)
    return window_candidates(s, e, offsets, n_best=5, **kw)


def test_answer_crossing_window_edge_comes_from_second_window() -> None:
    # window 0: question token has huge logits (invalid: not context); best valid span "beta" = 9
    w0 = _window(W0_OFFSETS, {1: 50.0, 4: 4.5}, {1: 50.0, 4: 4.5})
    assert w0.spans[0] == (9.0, 6, 10)
    # window 1: "gamma delta" = 12 beats window 0's best
    w1 = _window(W1_OFFSETS, {3: 6.0}, {4: 6.0})
    assert select_answer([w0, w1], CTX) == "gamma delta"
    assert select_answer([w0], CTX) == "beta"


def test_invalid_spans_rejected() -> None:
    # best start after best end -> end < start is skipped; next valid pair wins
    w = _window(W0_OFFSETS, {5: 9.0, 3: 1.0}, {3: 9.0, 5: 0.5})
    assert all(e >= s for _, s, e in w.spans)
    assert select_answer([w], CTX) == "alpha"  # (3,3): 1 + 9 = 10 beats (5,5): 9.5
    # max_answer_length=2 forbids alpha..gamma (3 tokens)
    w = _window(W0_OFFSETS, {3: 9.0}, {5: 9.0}, max_answer_length=2)
    assert (18.0, 0, 16) not in w.spans
    assert (18.0, 0, 16) in _window(W0_OFFSETS, {3: 9.0}, {5: 9.0}).spans
    # padding beyond the offsets list is never chosen
    s, e = _logits(10, {8: 100.0}, {9: 100.0})
    assert window_candidates(s, e, W0_OFFSETS).spans[0][0] < 100


def test_no_answer_null_score_min_over_windows() -> None:
    w0 = _window(W0_OFFSETS, {0: 8.0, 4: 3.0}, {0: 8.0, 4: 3.0})  # null 16, span 6
    w1 = _window(W1_OFFSETS, {0: 2.0, 3: 4.0}, {0: 2.0, 4: 4.0})  # null 4, span 8
    assert w0.null_score == 16.0 and w1.null_score == 4.0
    # null = min(16, 4) = 4 < best span 8: answer
    assert select_answer([w0, w1], CTX, version_2_with_negative=True) == "gamma delta"
    # with only window 0: null 16 - span 6 = 10 > 0 -> no answer; threshold 11 lets the span through
    assert select_answer([w0], CTX, version_2_with_negative=True) == ""
    assert select_answer([w0], CTX, version_2_with_negative=True, null_score_diff_threshold=11.0) == "beta"
    assert select_answer([w0], CTX) == "beta"  # v1 never abstains


# ---------------------------------------------------------------- official EM / F1

def test_normalisation_and_hand_f1() -> None:
    assert normalize_answer("The  Cat's, a HAT!") == "cats hat"
    assert normalize_answer("an apple") == "apple"
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P=1, R=2/3
    assert f1_score("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # P=1/2, R=1
    assert score_example("Cat", ["dog", "the cat"]) == (1.0, 1.0)
    assert score_example("", []) == (1.0, 1.0)  # v2: unanswerable and abstained
    assert score_example("something", [""]) == (0.0, 0.0)


def test_em_f1_match_torchmetrics_squad_reference() -> None:
    cases = [
        ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"]),
        ("the Carolina Panthers team", ["Carolina Panthers"]),
        ("Santa Clara, California", ["Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."]),
        ("gold", ["golden anniversary", "gold-themed"]),
        ("1990", ["2016"]),
    ]
    preds = [{"prediction_text": p, "id": str(i)} for i, (p, _) in enumerate(cases)]
    target = [
        {"answers": {"answer_start": [0] * len(g), "text": g}, "id": str(i)} for i, (_, g) in enumerate(cases)
    ]
    reference = tm_squad(preds, target)
    ours = [score_example(p, g) for p, g in cases]
    assert 100 * sum(s[0] for s in ours) / len(cases) == pytest.approx(reference["exact_match"].item(), abs=1e-4)
    assert 100 * sum(s[1] for s in ours) / len(cases) == pytest.approx(reference["f1"].item(), abs=1e-4)


# ---------------------------------------------------------------- the metric

def _features() -> list[dict]:
    """Five windows of three examples: A's answer crosses w0's edge, B's is in w1 only, C has none."""
    a0 = _logits(7, {1: 50.0, 4: 4.5}, {1: 50.0, 4: 4.5})  # best valid "beta" = 9
    a1 = _logits(6, {3: 6.0}, {4: 6.0})  # "gamma delta" = 12
    b0 = _logits(7, {0: 3.0, 3: 1.0}, {0: 3.0, 3: 1.0})  # "alpha" = 2, null 6
    b1 = _logits(6, {0: -1.0, 4: 5.0}, {0: -1.0, 4: 5.0})  # "delta" = 10, null -2
    c0 = _logits(7, {0: 9.0, 5: 1.0}, {0: 9.0, 5: 1.0})  # null 18 vs "gamma" 2
    rows = [("A", 0, a0, W0_OFFSETS, ["gamma delta"]), ("A", 1, a1, W1_OFFSETS, ["gamma delta"]),
            ("B", 0, b0, W0_OFFSETS, ["delta"]), ("B", 1, b1, W1_OFFSETS, ["Delta."]),
            ("C", 0, c0, W0_OFFSETS, [])]  # fmt: skip
    return [{"id": i, "w": w, "start": s, "end": e, "offsets": o, "answers": g} for i, w, (s, e), o, g in rows]


def _update(metric: SquadMetric, feats: list[dict]) -> None:
    length = max(len(f["offsets"]) for f in feats)
    pad = lambda t: torch.cat([t, torch.full((length - len(t),), -1e4)])  # noqa: E731
    metric.update(
        torch.stack([pad(f["start"]) for f in feats]), torch.stack([pad(f["end"]) for f in feats]),
        [f["offsets"] for f in feats], [f["id"] for f in feats], torch.tensor([f["w"] for f in feats]),
        [CTX] * len(feats), [f["answers"] for f in feats],
    )  # fmt: skip


def test_metric_over_batches_then_partial_sanity_pass() -> None:
    feats = _features()
    metric = SquadMetric(n_best=5, version_2_with_negative=True)
    _update(metric, feats[:3])  # A's windows and B's first window land in one batch...
    _update(metric, feats[3:])  # ...B's second window in the next
    assert metric.predictions() == {"A": "gamma delta", "B": "delta", "C": ""}
    assert metric.compute() == {"exact_match": torch.tensor(100.0), "f1": torch.tensor(100.0)}
    metric.reset()
    # a sanity check that sees two windows: scored over example A only, with the windows it saw
    _update(metric, feats[:1])
    assert metric.predictions() == {"A": "beta"}
    assert metric.compute()["exact_match"].item() == 0.0
    metric.reset()
    assert metric.compute()["f1"].item() == 0.0
    with pytest.raises(NotImplementedError):
        metric(torch.zeros(1, 2), torch.zeros(1, 2))


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    feats = _features()
    # DistributedSampler(shuffle=False): pad by repeating from the start, then take every world-th
    indices = list(range(len(feats)))
    indices += indices[: (-len(indices)) % world]
    mine = [feats[i] for i in indices[rank::world]]
    metric = SquadMetric(n_best=5, version_2_with_negative=True)
    _update(metric, mine[:2])
    _update(metric, mine[2:])
    local = metric._select(metric._windows, metric._examples)
    torch.save({"local": local, "global": metric.predictions(), "scores": metric.compute()},
               os.path.join(out_dir, f"rank{rank}.pt"))  # fmt: skip
    dist.destroy_process_group()


@pytest.mark.timeout(60)  # a hung worker fails the test instead of the suite
def test_metric_under_ddp_gathers_windows_across_ranks(tmp_path: Path) -> None:
    # fork: the workers inherit the imported modules (spawning re-imports torchmetrics, seconds each)
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # rank 0 alone sees only A's first window and would answer "beta": the gather fixes that
    assert results[0]["local"]["A"] == "beta"
    for result in results:
        assert result["global"] == {"A": "gamma delta", "B": "delta", "C": ""}
        assert result["scores"]["exact_match"].item() == 100.0 and result["scores"]["f1"].item() == 100.0
