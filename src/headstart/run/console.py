"""What a run prints: the composed config as a tree, and one closing line saying where it all went."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import rich
import rich.syntax
import rich.tree
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

ORDER = ("task", "model", "data", "optim", "trainer", "callbacks", "logger", "paths")


@rank_zero_only
def print_config_tree(cfg: DictConfig, resolve: bool = True) -> None:
    """Print the config as a tree, unless ``extras.print_config`` is false."""
    if not (cfg.get("extras") or {}).get("print_config", True):
        return
    tree = rich.tree.Tree("CONFIG", style="bold")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=resolve) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def wandb_location(loggers: Iterable[Any]) -> str:
    """Where this run's W&B run is: its URL online, ``wandb sync <dir>`` offline, ``off`` without one.

    Read from the logger's run object, which keeps its attributes after ``wandb.finish()``;
    a logger whose run never started reports ``off`` (reading ``.experiment`` would start one).
    """
    for logger in loggers:
        run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is None:
            continue
        if getattr(run, "offline", False):
            return f"offline, upload with `wandb sync {run.settings.sync_dir}`"
        return str(run.url or run.settings.sync_dir)
    return "off"


@rank_zero_only
def print_run_locations(run_dir: str | Path, files: Mapping[str, str | Path], loggers: Iterable[Any] = ()) -> None:
    """One line at the end of a run: ``run: <dir> | metrics: <file> | W&B: <url or sync dir>``."""
    parts = [f"run: {run_dir}", *(f"{name}: {path}" for name, path in files.items()), f"W&B: {wandb_location(loggers)}"]
    print(" | ".join(parts), flush=True)
