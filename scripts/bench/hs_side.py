"""The headstart side of every comparison: the real ``headstart.train.train(cfg)`` on a composed config.

The config is composed as the command line would compose it (``python train.py <overrides>``),
with the dashboard parts a benchmark has no use for switched off (CSV logger only, no progress
bar) and the run directory in a fresh temporary folder per run.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import lightning
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from headstart.run.build import Built, build
from headstart.run.checks import CONF_DIR
from headstart.run.config import register_resolvers
from scripts.bench.harness import SideResult

# Every side runs in this process with the same torch thread count; no progress bar, CSV only.
QUIET = [
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary",
    "trainer.num_sanity_val_steps=0",
]


def compose_cfg(overrides: list[str], out_dir: Path) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``; run files go to ``out_dir``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*QUIET, *overrides, f"paths.root_dir={out_dir}", f"paths.output_dir={out_dir}"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def built_like_train(overrides: list[str]) -> Built:
    """What ``train(cfg)`` builds first (same seed, same order): the init weights and data of a run."""
    cfg = compose_cfg(overrides, Path(tempfile.mkdtemp(prefix="bench_init_")))
    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    return build(cfg)


def check_same_init(first: Built, second: Built) -> None:
    """Two builds of one config must give the same weights, or the sides would not start equal."""
    a, b = first.task.state_dict(), second.task.state_dict()
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    if bad:
        raise RuntimeError(f"headstart's init is not reproducible under its seed ({len(bad)} tensors differ, e.g. {bad[0]})")


def epoch_mean(out_dir: Path, names: tuple[str, ...]) -> float | None:
    """The mean over the run's epochs of the first of ``names`` found in the CSV logger's
    metrics.csv (an epoch-level figure, e.g. the padding share, over the whole run as the peers
    count theirs; epochs hold nearly the same number of positions, so equal weights are close)."""
    for file in sorted(out_dir.rglob("metrics.csv")):
        with file.open() as handle:
            rows = list(csv.DictReader(handle))
        for name in names:
            values = [float(row[name]) for row in rows if row.get(name) not in (None, "")]
            if values:
                return sum(values) / len(values)
    return None


def replayed_batches(built: Built, steps: int) -> list[list[int]]:
    """headstart's first ``steps`` training batches (example indices): its batch order is a
    function of (seed, epoch) alone, so replaying its sampler gives exactly what it trains on."""
    sampler = built.datamodule._train_batches(built.datamodule.train_set)
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        sampler.set_epoch(epoch)
        batches += [list(b) for b in sampler][: steps - len(batches)]
        epoch += 1
    return batches


def replayed_positions(batches: list[list[int]], lengths: list[int]) -> int:
    """Padded positions (batch size x longest) of those batches."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def run_headstart(overrides: list[str], metric: str, positions: int | None = None) -> SideResult:
    """One ``train(cfg)`` run; samples/s from metrics.json, padding fraction from the CSV log
    (the mean of its epochs).

    positions: padded positions of the whole training run (see :func:`replayed_positions`)."""
    from headstart.train import train

    out_dir = Path(tempfile.mkdtemp(prefix="bench_hs_"))
    cfg = compose_cfg(overrides, out_dir)
    results: dict[str, Any] = train(cfg)
    padding = epoch_mean(out_dir, ("train/padding_fraction_epoch", "train/padding_fraction"))
    sps = float(results["train_samples_per_second"])
    per_sample = positions / (int(results["global_step"]) * int(cfg.data.batch_size)) if positions else None
    return SideResult(
        samples_per_second=sps,
        positions_per_second=sps * per_sample if per_sample else None,
        metric=results.get(metric),
        padding_fraction=padding,
        train_seconds=results.get("fit_seconds"),
        extra={"global_step": results.get("global_step"), "threads_after": torch.get_num_threads()},
    )
