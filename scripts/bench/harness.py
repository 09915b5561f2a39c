"""The comparison harness: run sides alternately, summarise, print a table, write JSON.

A *side* is a named callable returning a :class:`SideResult` (one complete training run and its
final metric). :func:`alternate` runs ``A B C A B C ...`` for ``repeats`` rounds in one process,
so slow drift of the machine's load hits every side alike; :func:`summarise` reduces the runs to
median / min / max samples per second, the ratio of the first side (headstart) to each other side,
the metric of each side and the padding fraction.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class SideResult:
    """One run of one side. samples_per_second counts training only (no evaluation, no set-up)."""

    samples_per_second: float
    metric: float | None = None
    padding_fraction: float | None = None
    train_seconds: float | None = None
    samples: int | None = None
    # positions (tokens or audio samples, padding included) per second: the work done, which a
    # short run's batch mix can make differ between sides when samples/s alone would not show it
    positions_per_second: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Side:
    name: str
    run: Callable[[], SideResult]


def alternate(sides: Sequence[Side], repeats: int, log: Callable[[str], None] = print) -> dict[str, list[SideResult]]:
    """Run every side once per round, in the given order, ``repeats`` rounds: A B C A B C ..."""
    runs: dict[str, list[SideResult]] = {side.name: [] for side in sides}
    for round_ in range(repeats):
        for side in sides:
            start = time.perf_counter()
            result = side.run()
            runs[side.name].append(result)
            metric = "-" if result.metric is None else f"{result.metric:.4f}"
            log(f"[bench] round {round_ + 1}/{repeats} {side.name}: {result.samples_per_second:.2f} samples/s, "
                f"metric {metric} ({time.perf_counter() - start:.0f} s wall)")
    return runs


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: dict[str, list[SideResult]], reference: str | None = None) -> dict[str, Any]:
    """Per side: samples/s and metric stats, padding fraction; ratios of ``reference`` (default the
    first side) to every other side, as a ratio of medians plus the min/max of per-round ratios."""
    names = list(runs)
    reference = reference or names[0]
    sides: dict[str, Any] = {}
    for name, results in runs.items():
        metrics = [r.metric for r in results if r.metric is not None]
        padding = [r.padding_fraction for r in results if r.padding_fraction is not None]
        positions = [r.positions_per_second for r in results if r.positions_per_second]
        sides[name] = {
            "samples_per_second": _stats([r.samples_per_second for r in results]),
            "positions_per_second": _stats(positions) if positions else None,
            "metric": _stats(metrics) if metrics else None,
            "padding_fraction": statistics.median(padding) if padding else None,
            "runs": [asdict(r) for r in results],
        }
    ratios: dict[str, Any] = {}
    ref_runs = runs[reference]
    for name in names:
        if name == reference:
            continue
        per_round = [a.samples_per_second / b.samples_per_second for a, b in zip(ref_runs, runs[name]) if b.samples_per_second > 0]
        ref_median = sides[reference]["samples_per_second"]["median"]
        other_median = sides[name]["samples_per_second"]["median"]
        ratios[f"{reference}/{name}"] = {
            "median_ratio": ref_median / other_median if other_median > 0 else float("nan"),
            "round_min": min(per_round) if per_round else None,
            "round_max": max(per_round) if per_round else None,
        }
        ref_pos, other_pos = sides[reference]["positions_per_second"], sides[name]["positions_per_second"]
        if ref_pos and other_pos:
            ratios[f"{reference}/{name}"]["positions_median_ratio"] = ref_pos["median"] / other_pos["median"]
    return {"reference": reference, "sides": sides, "ratios": ratios}


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(name: str, summary: dict[str, Any], metric_name: str) -> str:
    """A plain-text table: one row per side, then one line per ratio."""
    header = f"{'side':<22} {'samples/s median':>16} {'min':>8} {'max':>8} {metric_name + ' (median)':>18} {'spread':>8} {'padding':>8}"
    lines = [f"== {name} ==", header, "-" * len(header)]
    for side, s in summary["sides"].items():
        sps, metric = s["samples_per_second"], s["metric"]
        spread = metric["max"] - metric["min"] if metric else None
        lines.append(
            f"{side:<22} {sps['median']:>16.2f} {sps['min']:>8.2f} {sps['max']:>8.2f} "
            f"{_fmt(metric['median'] if metric else None, '.4f'):>18} {_fmt(spread, '.4f'):>8} {_fmt(s['padding_fraction'], '.3f'):>8}"
        )
    for pair, r in summary["ratios"].items():
        positions = f"; positions/s {r['positions_median_ratio']:.3f}x" if "positions_median_ratio" in r else ""
        lines.append(
            f"ratio {pair}: {r['median_ratio']:.3f}x (per round {_fmt(r['round_min'], '.3f')}-{_fmt(r['round_max'], '.3f')}){positions}"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the numbers depend on: threads, affinity, load, versions."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "torch_threads": torch.get_num_threads(),
        "affinity": affinity,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: str | Path, name: str, settings: dict[str, Any], summary: dict[str, Any], env_before: dict[str, Any]) -> Path:
    """The whole record: settings, environment at start and end, per-run results, summary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "settings": settings, "environment": {"start": env_before, "end": environment()}, **summary}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
