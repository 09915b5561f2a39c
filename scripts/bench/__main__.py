"""``python -m scripts.bench [name ...|all|defaults] [--quick] [--repeats N] [--seeds N] [--out file.json]
[--threads N] [--thread-policy] [--torch-dropout] [--no-decode-cache]``.

Each comparison runs its sides alternately (A B C A B C ...) in this one process, prints a table
and writes a JSON record (default ``logs/bench/<name>.json``; results are not committed).
``defaults`` (``defaults_textcls``, ``defaults_ner``, ``defaults_audio``, ``defaults_cifar``) runs
each side with its own defaults instead of one shared recipe, over ``--seeds`` seeds
(scripts/bench/defaults.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# torch's own choice before anything sets it (cores of the machine, or OMP_NUM_THREADS)
TORCH_DEFAULT_THREADS = torch.get_num_threads()

from headstart.run.threads import choose_threads  # noqa: E402
from scripts.bench.harness import Side, alternate, environment, format_table, summarise, write_json  # noqa: E402

NAMES = ("textcls", "ner", "audio", "image_vit", "image_convnext", "detr_loss")
# each side with its own defaults (scripts/bench/defaults.py); not part of "all"
DEFAULTS = ("defaults_textcls", "defaults_ner", "defaults_audio", "defaults_cifar")
ALIASES = {"image": ("image_vit", "image_convnext"), "all": NAMES, "defaults": DEFAULTS}
METRICS = {"textcls": "val/acc", "ner": "val/f1 (entity)", "audio": "val/acc", "image_vit": "val/acc",
           "image_convnext": "val/acc", "detr_loss": "loss"}


def build_sides(name: str, args: argparse.Namespace) -> tuple[list[Side], dict[str, Any]]:
    if name in ("textcls", "ner"):
        from scripts.bench.text import comparison
        return comparison(name, args.quick, args.steps)
    if name == "audio":
        from scripts.bench.audio import comparison
        return comparison(args.quick, args.steps)
    if name.startswith("image_"):
        from scripts.bench.image import comparison
        return comparison(args.quick, args.steps, name.split("_", 1)[1])
    if name == "detr_loss":
        from scripts.bench.detr_loss import comparison
        return comparison(args.quick)
    raise SystemExit(f"unknown comparison {name!r}: one of {', '.join(NAMES)}")


def pinned(side: Side, threads: int) -> Side:
    """Every side starts at the same torch thread count (a run may have changed it)."""
    def run() -> Any:
        torch.set_num_threads(threads)
        return side.run()
    return Side(side.name, run)


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    threads, source = choose_threads(args.threads)  # headstart's policy, once for every side
    os.environ["OMP_NUM_THREADS"] = str(threads)  # headstart's train() reads the same count
    torch.set_num_threads(threads)
    env = environment()
    print(f"[bench] {name}: {threads} torch threads ({source}), affinity {env['affinity']}, load {env['load_average']}", flush=True)
    start = time.perf_counter()
    sides, settings = build_sides(name, args)
    if args.thread_policy and "overrides" in settings:
        # headstart itself, but at torch's default thread count instead of headstart's policy
        from scripts.bench.hs_side import run_headstart

        default = [*settings["overrides"], f"+threads={TORCH_DEFAULT_THREADS}"]
        sides.insert(1, Side(f"headstart_torch_default_{TORCH_DEFAULT_THREADS}t", lambda: run_headstart(default, settings["metric"])))
    if args.torch_dropout and "overrides" in settings:
        # headstart itself, with torch's dropout instead of its cheaper CPU masks (callbacks/fast_dropout.py)
        from scripts.bench.hs_side import run_headstart

        plain_dropout = [*settings["overrides"], "~callbacks.fast_dropout"]
        sides.insert(1, Side("headstart_torch_dropout", lambda: run_headstart(plain_dropout, settings["metric"])))
    if args.no_decode_cache and name == "audio":
        # headstart itself, decoding every clip at every read as the peers do (no data.cache_mb)
        from scripts.bench.hs_side import run_headstart

        decoding = [*settings["overrides"], "data.cache_mb=0"]
        sides.insert(1, Side("headstart_decode_each_epoch", lambda: run_headstart(decoding, settings["metric"])))
    sides = [pinned(side, threads) for side in sides]
    repeats = args.repeats or (2 if args.quick else 3)
    runs = alternate(sides, repeats, log=lambda line: print(line, flush=True))
    summary = summarise(runs)
    settings.update(
        quick=args.quick, repeats=repeats, threads=threads, threads_source=source, wall_seconds=round(time.perf_counter() - start, 1)
    )
    print(format_table(f"{name}{' (quick)' if args.quick else ''}", summary, METRICS.get(name, "metric")), flush=True)
    out = Path(args.out) if args.out else Path("logs/bench") / f"{name}{'_quick' if args.quick else ''}.json"
    print(f"[bench] wrote {write_json(out, name, settings, summary, env)}", flush=True)
    return summary


def run_defaults(names: list[str], args: argparse.Namespace) -> None:
    """The defaults rows: each side with its own defaults, mean ± std over the seeds."""
    from scripts.bench import defaults

    threads, source = choose_threads(args.threads)  # one count for both sides, as in run_one
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    seeds = defaults.seed_list(args.seeds or (2 if args.quick else 3))
    print(f"[bench] defaults: {threads} torch threads ({source}), seeds {seeds}", flush=True)
    rows = [defaults.build_row(name, args.quick, args.steps) for name in names]
    out_dir = Path(args.out).parent if args.out else Path("logs/bench")
    done = defaults.run_rows(rows, seeds, out_dir, quick=args.quick, threads=threads, log=lambda line: print(line, flush=True))
    if args.out and len(done) == 1:  # --out names the one row's file
        produced = out_dir / f"{names[0]}{'_quick' if args.quick else ''}.json"
        if produced != Path(args.out):
            produced.replace(args.out)
            print(f"[bench] moved to {args.out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", default=["all"],
        help=f"comparisons: {', '.join(NAMES)}; image (both models); all (default: these); "
             f"{', '.join(DEFAULTS)}; defaults (those four: each side with its own defaults)",
    )
    parser.add_argument("--quick", action="store_true", help="a few hundred steps or fewer per side, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of A B C (default 2 quick, 3 full)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (overrides the mode's default)")
    parser.add_argument("--seeds", type=int, default=None, help="defaults rows: seeds per side (default 2 quick, 3 full)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every side (default: headstart's policy)")
    parser.add_argument(
        "--thread-policy", action="store_true", help="add a headstart side at torch's own default thread count (headstart's policy off)"
    )
    parser.add_argument(
        "--torch-dropout", action="store_true", help="add a headstart side with torch's dropout (its cheaper CPU dropout masks off)"
    )
    parser.add_argument(
        "--no-decode-cache", action="store_true", help="audio: add a headstart side that decodes every clip each epoch (data.cache_mb=0)"
    )
    parser.add_argument("--out", default=None, help="JSON file (one comparison only; default logs/bench/<name>.json)")
    args = parser.parse_args(argv)
    names = [n for name in args.names for n in ALIASES.get(name, (name,))]
    for name in names:
        if name not in NAMES and name not in DEFAULTS:
            parser.error(f"unknown comparison {name!r}: one of {', '.join(NAMES + DEFAULTS)}, image, all or defaults")
    if args.out and len(names) > 1:
        parser.error("--out names one file: give one comparison")
    for name in names:
        if name in NAMES:
            run_one(name, args)
    chosen = [name for name in names if name in DEFAULTS]
    if chosen:
        run_defaults(chosen, args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
