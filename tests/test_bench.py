"""The benchmark harness's bookkeeping (alternation, medians, ratios, table, JSON) and the
default CPU thread policy (src/headstart/run/threads.py). No training, no ../shared data."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from headstart.callbacks import throughput as module
from headstart.run.threads import allowed_cores, apply_thread_policy, busy_cores, choose_threads, free_cores

ROOT = Path(__file__).resolve().parents[1]


def load_harness():
    """scripts/ is not an installed package: load the harness module from its file."""
    spec = importlib.util.spec_from_file_location("bench_harness", ROOT / "scripts" / "bench" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


H = load_harness()


def fake_runs() -> dict:
    R = H.SideResult
    return {
        "headstart": [R(30.0, 0.80, 0.02), R(36.0, 0.82, 0.03), R(33.0, 0.81, 0.02)],
        "trainer": [R(20.0, 0.79, 0.05), R(24.0, 0.80, 0.05), R(22.0, 0.78, 0.05)],
        "plain": [R(33.0, None, None), R(33.0, None, None), R(33.0, None, None)],
    }


def test_sides_alternate_every_round():
    order: list[str] = []

    def side(name: str) -> H.Side:
        return H.Side(name, lambda: order.append(name) or H.SideResult(1.0))

    runs = H.alternate([side("a"), side("b"), side("c")], repeats=3, log=lambda _: None)
    assert order == ["a", "b", "c"] * 3
    assert [len(v) for v in runs.values()] == [3, 3, 3]


def test_summary_medians_spread_and_ratios():
    summary = H.summarise(fake_runs())
    hs = summary["sides"]["headstart"]
    assert hs["samples_per_second"] == {"median": 33.0, "min": 30.0, "max": 36.0}
    assert hs["metric"]["median"] == pytest.approx(0.81) and hs["metric"]["max"] - hs["metric"]["min"] == pytest.approx(0.02)
    assert hs["padding_fraction"] == pytest.approx(0.02)
    assert summary["sides"]["plain"]["metric"] is None
    vs_trainer = summary["ratios"]["headstart/trainer"]
    assert vs_trainer["median_ratio"] == pytest.approx(33.0 / 22.0)
    assert vs_trainer["round_min"] == pytest.approx(1.5) and vs_trainer["round_max"] == pytest.approx(1.5)
    vs_plain = summary["ratios"]["headstart/plain"]
    assert vs_plain["median_ratio"] == pytest.approx(1.0)
    assert vs_plain["round_min"] == pytest.approx(30 / 33) and vs_plain["round_max"] == pytest.approx(36 / 33)


def test_table_and_json_record(tmp_path: Path):
    summary = H.summarise(fake_runs())
    table = H.format_table("textcls", summary, "val/acc")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:6]}
    assert rows["headstart"][1:4] == ["33.00", "30.00", "36.00"] and rows["headstart"][4] == "0.8100"
    assert rows["plain"][4] == "-"  # no metric is shown as missing, not as 0
    assert "ratio headstart/trainer: 1.500x (per round 1.500-1.500)" in table
    path = H.write_json(tmp_path / "out" / "textcls.json", "textcls", {"recipe": {"lr": 5e-5}}, summary, H.environment())
    record = json.loads(path.read_text())
    assert record["name"] == "textcls" and record["settings"]["recipe"]["lr"] == 5e-5
    assert record["ratios"]["headstart/trainer"]["median_ratio"] == pytest.approx(1.5)
    assert len(record["sides"]["trainer"]["runs"]) == 3
    assert record["environment"]["start"]["torch_threads"] == torch.get_num_threads()


def test_thread_policy_precedence():
    cores = allowed_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert choose_threads(3, {"OMP_NUM_THREADS": "1"}) == (3, "config")
    assert choose_threads(None, {"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS")
    assert choose_threads(0, {}, load=0.0, machine_cores=cores) == (cores, "affinity")  # 0 / null: automatic
    assert choose_threads(None, {"OMP_NUM_THREADS": "lots"}, load=0.0, machine_cores=cores) == (cores, "affinity")
    # other work keeps the machine busy: only the free cores (at least one)
    assert choose_threads(None, {}, load=cores + 9.0, machine_cores=cores) == (1, "affinity+load")
    assert free_cores(0.4, 2) == 2 and free_cores(0.6, 2) == 1 and free_cores(11.0, 2) == 1 and free_cores(1.2, 8) == 7
    before = torch.get_num_threads()
    try:
        assert apply_thread_policy({"threads": 1}) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_resumed_run_takes_the_thread_count_its_checkpoint_records(monkeypatch: pytest.MonkeyPatch):
    """Exact resume needs the killed run's thread count (reductions sum in another order otherwise);
    a configured count and OMP_NUM_THREADS still win."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert apply_thread_policy({}, resumed=1) == 1 and torch.get_num_threads() == 1
        assert apply_thread_policy({"threads": 2}, resumed=1) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert apply_thread_policy({}, resumed=1) == 2
    finally:
        torch.set_num_threads(before)


def test_thread_policy_follows_a_pinned_affinity():
    """Pinned to one core (as taskset -c does), the policy uses one thread, idle machine or not."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        assert allowed_cores() == 1
        assert choose_threads(None, {}, load=0.0, machine_cores=os.cpu_count()) == (1, "affinity")
        assert choose_threads(None, {}, load=50.0, machine_cores=os.cpu_count())[0] == 1
    finally:
        os.sched_setaffinity(0, saved)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc")
def test_busy_cores_counts_other_processes_now_and_not_this_one():
    """Another process spinning on a core counts as about one busy core; this process spinning
    does not count (it is the run being sized), and nothing lags behind like the load average."""
    import subprocess
    import threading

    baseline = busy_cores(0.5)
    if baseline > 0.4:
        pytest.skip(f"other work keeps {baseline:.1f} cores busy: nothing to measure against")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(0.5) >= baseline + 0.6
    finally:
        spinner.kill()
        spinner.wait()
    stop = time.monotonic() + 1.0
    spin = threading.Thread(target=lambda: [None for _ in iter(lambda: time.monotonic() < stop, False)])
    spin.start()
    try:
        assert busy_cores(0.5) < baseline + 0.5  # the other process is gone; our own spinning thread is left out
    finally:
        spin.join()


def test_throughput_leaves_validation_and_its_checkpoint_write_out(monkeypatch: pytest.MonkeyPatch):
    """Clock: train 0-2 s, validation 2-3 s, best-checkpoint write 3-5 s, train 5-7 s -> 4 s counted."""
    now = iter([0.0, 2.0, 5.0, 7.0])
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(now))
    callback, trainer = module.Throughput(), SimpleNamespace(world_size=1, training=True)
    batch = {"x": torch.zeros(4, 3)}
    callback.on_train_epoch_start(trainer, None)  # 0
    callback.on_train_batch_start(trainer, None, batch, 0)  # clock already running: no read
    callback.on_train_batch_end(trainer, None, None, batch, 0)
    callback.on_validation_start(trainer, None)  # 2
    callback.on_validation_end(trainer, None)
    callback.on_train_batch_start(trainer, None, batch, 1)  # 5
    callback.on_train_batch_end(trainer, None, None, batch, 1)
    callback.on_train_epoch_end(trainer, None)  # 7
    assert callback.train_seconds == pytest.approx(4.0) and callback.samples == 8
    assert callback.samples_per_second == pytest.approx(2.0)


def test_peers_cut_replayed_batches_into_the_same_batches(monkeypatch) -> None:  # noqa: ANN001
    """The peers chunk a flat order by batch size: with the epoch's short batch shuffled into the
    middle, chunking in place would straddle length groups; the aligned order gives the same batches."""
    monkeypatch.syspath_prepend(str(ROOT))
    from scripts.bench.text import aligned_order

    batches = [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9, 10]]  # batch size 3, the short one second
    order = aligned_order(batches, 3)
    chunks = [order[i : i + 3] for i in range(0, len(order), 3)]
    assert sorted(chunks) == sorted(batches)


def test_headstart_padding_is_the_mean_over_its_epochs(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The peers count padding over the whole run; headstart's figure is its logged epochs' mean,
    not the last epoch's (FSDD: 0.089 in epoch 1, 0.057 in epoch 10), and step rows are ignored."""
    monkeypatch.syspath_prepend(str(ROOT))
    from scripts.bench.hs_side import epoch_mean

    log = tmp_path / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text(
        "epoch,step,train/padding_fraction_step,train/padding_fraction_epoch\n"
        "0,0,0.5,\n0,74,,0.089\n1,75,0.01,\n1,149,,0.057\n"
    )
    assert epoch_mean(tmp_path, ("train/padding_fraction_epoch", "train/padding_fraction")) == pytest.approx(0.073)
    assert epoch_mean(tmp_path, ("missing",)) is None


def _tiny_bert(folder: Path, corpus: list[str]) -> Path:
    """A 1-layer BERT and a WordPiece tokenizer trained on ``corpus``, saved as a checkpoint folder."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(corpus, vocab_size=200, min_frequency=1, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = BertTokenizerFast(vocab=trainer.get_vocab(), model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def _made_up_data(root: Path) -> dict[str, Path]:
    """Tiny text / NER / audio / image sets of the layouts the defaults rows read."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    good, bad, fill = ["great", "lovely", "superb", "fun"], ["awful", "dull", "boring", "bad"], ["the", "film", "was", "plot", "a"]
    def sentence(words: list[str]) -> str:
        return " ".join(rng.choice(fill, 3).tolist() + [str(rng.choice(words))] + rng.choice(fill, 2).tolist())
    rows = [{"text": sentence(good if i % 2 else bad), "label": "pos" if i % 2 else "neg"} for i in range(80)]
    text = root / "text"
    text.mkdir(parents=True)
    (text / "train.json").write_text("".join(json.dumps(r) + "\n" for r in rows[:64]))
    (text / "val.json").write_text("".join(json.dumps(r) + "\n" for r in rows[64:]))
    people, places = ["alice", "bob", "carol"], ["paris", "rome", "oslo"]
    def conll(n: int) -> str:
        lines = []
        for _ in range(n):
            person, place = str(rng.choice(people)), str(rng.choice(places))
            lines += [f"{person} B-PER", "went O", "to O", f"{place} B-LOC", "city I-LOC", ""]
        return "\n".join(lines) + "\n"
    (root / "ner.train").write_text(conll(48))
    (root / "ner.val").write_text(conll(12))
    audio, manifests = root / "audio", {}
    audio.mkdir()
    for split, n in (("train", 16), ("val", 8)):
        lines = []
        for i in range(n):
            label = i % 2
            t = np.arange(int(8000 * 0.25)) / 8000
            wave = 0.5 * np.sin(2 * np.pi * (300 if label else 1200) * t) + 0.01 * rng.standard_normal(t.size)
            path = audio / f"{split}_{i}.wav"
            sf.write(path, wave.astype("float32"), 8000)
            lines.append(json.dumps({"path": path.name, "label": str(label), "duration": 0.25}))
        manifests[split] = audio / f"{split}.jsonl"
        manifests[split].write_text("\n".join(lines) + "\n")
    images = root / "images"
    for split, n in (("train", 16), ("val", 6)):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (images / split / label).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype("uint8")
                Image.fromarray(pixels).save(images / split / label / f"{i}.png")
    bert = _tiny_bert(root / "bert", [r["text"] for r in rows] + conll(8).split())
    return {"text": text, "ner_train": root / "ner.train", "ner_val": root / "ner.val", "audio_train": manifests["train"],
            "audio_val": manifests["val"], "images": images, "bert": bert}


def test_defaults_rows_end_to_end_on_made_up_data(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Every defaults row (headstart's train(cfg) with conf's defaults vs the Trainer as the example
    scripts run it, and vs the plain CIFAR loop) on tiny data written here, two seeds alternating:
    the table and the JSON carry mean and std of the metric and samples/s for both sides."""
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the bench extra)")
    monkeypatch.syspath_prepend(str(ROOT))
    from scripts.bench import defaults as D

    data = _made_up_data(tmp_path / "data")
    rows = [
        D.textcls_row(data["text"], data["bert"], batch_size=16, lr=1e-3, epochs=1),
        D.ner_row(data["ner_train"], data["ner_val"], data["bert"], batch_size=16, lr=1e-3, epochs=1),
        D.audio_row(data["audio_train"], data["audio_val"], batch_size=8, lr=1e-3, epochs=1),
        D.cifar_row(data["images"], epochs=1, batch_size=16),
    ]
    lines: list[str] = []
    done = D.run_rows(rows, D.seed_list(2), tmp_path / "out", threads=torch.get_num_threads(), log=lines.append)
    assert [row.name for row, _ in done] == list(D.NAMES)
    table = lines[-2]  # the combined table, before the line naming its JSON
    assert table.startswith("== defaults ==")
    for row in rows:
        record = json.loads((tmp_path / "out" / f"{row.name}.json").read_text())
        assert record["settings"]["seeds"] == [42, 43]
        for side in ("headstart", row.peer):
            stats = record["sides"][side]
            assert len(stats["runs"]) == 2
            for key in ("metric", "samples_per_second"):
                assert stats[key]["n"] == 2 and stats[key]["std"] is not None and stats[key]["std"] >= 0
                assert stats[key]["mean"] == pytest.approx(sum(stats[key]["values"]) / 2)
            assert stats["samples_per_second"]["mean"] > 0
        ratio = record["ratios"][f"headstart/{row.peer}"]
        hs, peer = record["sides"]["headstart"], record["sides"][row.peer]
        speed = hs["samples_per_second"]["mean"] / peer["samples_per_second"]["mean"]
        assert ratio["samples_per_second_mean_ratio"] == pytest.approx(speed)
        assert "metric_mean_ratio" in ratio
        line = next(x for x in table.splitlines() if x.startswith(row.name))
        assert line.count("±") == 4  # metric and samples/s, both sides
        resolved = record["settings"]["headstart"]["resolved"]
        assert "optim.weight_decay" in resolved and "trainer.gradient_clip_val" in resolved  # conf's values, recorded
        if row.peer == "trainer_defaults":
            args = record["settings"]["peer"]["training_arguments"]
            assert args["weight_decay"] == 0.0 and args["warmup_steps"] == 0 and args["lr_scheduler_type"] == "linear"
    combined = json.loads((tmp_path / "out" / "defaults.json").read_text())
    assert set(combined["rows"]) == set(D.NAMES)
