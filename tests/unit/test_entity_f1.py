"""Entity-level P/R/F1: chunking rules (IOB1, IOB2, IOBES), hand-computed scores, -100 skipping, DDP sums."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from headstart.metrics.entity_f1 import EntityF1, get_entities, get_strict_entities

IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
IOB1 = ["O", "I-PER", "B-PER", "I-LOC"]
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]


def ids(names: list[str], labels: list[str]) -> list[int]:
    return [labels.index(n) for n in names]


def test_iob1_chunks_i_opens_b_separates() -> None:
    assert get_entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]
    assert get_entities(["I-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2)]


def test_iob2_default_and_strict() -> None:
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER", "B-ORG", "B-ORG"]
    # default (conlleval): stray I-LOC opens an entity; I-PER after B-ORG is a type change
    assert get_entities(tags) == [
        ("PER", 0, 1), ("LOC", 3, 4), ("ORG", 5, 5), ("PER", 6, 6), ("ORG", 7, 7), ("ORG", 8, 8)
    ]  # fmt: skip
    # strict: only B-X I-X* survive
    assert get_strict_entities(tags, "IOB2") == [("PER", 0, 1), ("ORG", 5, 5), ("ORG", 7, 7), ("ORG", 8, 8)]


def test_iobes_default_and_strict() -> None:
    tags = ["B-PER", "E-PER", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG", "B-PER", "I-PER", "O"]
    assert get_strict_entities(tags, "IOBES") == [("PER", 0, 1), ("LOC", 2, 2), ("ORG", 4, 6)]
    # default keeps the unterminated B-PER I-PER too
    assert get_entities(tags) == [("PER", 0, 1), ("LOC", 2, 2), ("ORG", 4, 6), ("PER", 7, 8)]


def test_hand_computed_iob2_scores() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"], ["B-ORG", "O", "B-PER", "O", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "O"], ["B-ORG", "O", "O", "O", "O", "O"]]
    metric = EntityF1(IOB2)
    metric.update(torch.tensor([ids(p, IOB2) for p in pred]), torch.tensor([ids(g, IOB2) for g in gold]))
    out = metric.compute()
    # pred 3 entities, gold 4, TP 2 (PER 0-1, ORG 0-0): P 2/3, R 1/2, F1 4/7
    assert out["precision"].item() == pytest.approx(2 / 3)
    assert out["recall"].item() == pytest.approx(1 / 2)
    assert out["f1"].item() == pytest.approx(4 / 7)
    assert out["f1_PER"].item() == pytest.approx(2 / 3)  # P 1, R 1/2
    assert out["f1_LOC"].item() == 0.0 and out["f1_ORG"].item() == 1.0


def test_hand_computed_iob1_scores() -> None:
    gold = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]  # PER 0-1, PER 2-2, LOC 4-4
    pred = ["I-PER", "I-PER", "I-PER", "O", "I-LOC"]  # PER 0-2, LOC 4-4
    metric = EntityF1(IOB1, scheme="IOB1")
    metric.update(torch.tensor([ids(pred, IOB1)]), torch.tensor([ids(gold, IOB1)]))
    out = metric.compute()
    assert (out["precision"].item(), out["recall"].item()) == pytest.approx((1 / 2, 1 / 3))
    assert out["f1"].item() == pytest.approx(0.4)
    assert out["f1_PER"].item() == 0.0 and out["f1_LOC"].item() == 1.0


def test_ignored_positions_dropped_and_logits_accepted() -> None:
    P = {n: i for i, n in enumerate(IOB2)}
    gold = torch.tensor([[-100, P["B-PER"], -100, P["I-PER"], P["O"], -100]])
    # predictions on ignored positions (special tokens, continuation sub-tokens) must not count
    pred = torch.tensor([[P["B-LOC"], P["B-PER"], P["B-LOC"], P["I-PER"], P["O"], P["I-LOC"]]])
    metric = EntityF1(IOB2)
    metric.update(torch.nn.functional.one_hot(pred, len(IOB2)).float(), gold)
    out = metric.compute()
    assert out["f1"].item() == 1.0 and out["precision"].item() == 1.0
    assert metric.n_pred.sum().item() == 1


def test_iobes_strict_scores_and_bad_labels() -> None:
    gold = ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]
    pred = ["B-PER", "I-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]  # PER never closed: invalid
    strict, lenient = EntityF1(IOBES, "IOBES", strict=True), EntityF1(IOBES, "IOBES")
    for metric in (strict, lenient):
        metric.update(torch.tensor([ids(pred, IOBES)]), torch.tensor([ids(gold, IOBES)]))
    assert strict.compute()["precision"].item() == 1.0 and strict.compute()["recall"].item() == pytest.approx(2 / 3)
    assert lenient.compute()["precision"].item() == pytest.approx(1.0)  # B-PER I-PER read as PER 0-1
    with pytest.raises(ValueError, match="IOB2"):
        EntityF1(["O", "S-PER"], scheme="IOB2")
    with pytest.raises(ValueError, match="strict"):
        EntityF1(IOB1, scheme="IOB1", strict=True)


def test_matches_seqeval_when_installed() -> None:
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    gen = torch.Generator().manual_seed(0)
    gold = torch.randint(0, len(IOB2), (20, 12), generator=gen)
    pred = torch.randint(0, len(IOB2), (20, 12), generator=gen)
    metric = EntityF1(IOB2)
    metric.update(pred, gold)
    names = lambda t: [[IOB2[i] for i in row] for row in t.tolist()]  # noqa: E731
    assert metric.compute()["f1"].item() == pytest.approx(seqeval_metrics.f1_score(names(gold), names(pred)))


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(0)
    gold = torch.randint(0, len(IOB2), (8, 10), generator=gen)
    pred = torch.randint(0, len(IOB2), (8, 10), generator=gen)
    metric = EntityF1(IOB2)
    metric.update(pred[rank::world], gold[rank::world])
    torch.save(metric.compute(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.timeout(60)  # a hung worker fails the test instead of the suite
def test_ddp_sums_counts(tmp_path: Path) -> None:
    # fork: the workers inherit the imported modules (spawning re-imports torchmetrics, seconds each)
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork")
    gen = torch.Generator().manual_seed(0)
    gold = torch.randint(0, len(IOB2), (8, 10), generator=gen)
    pred = torch.randint(0, len(IOB2), (8, 10), generator=gen)
    single = EntityF1(IOB2)
    single.update(pred, gold)
    expected = single.compute()
    assert 0.0 < expected["f1"].item() < 1.0
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key])
