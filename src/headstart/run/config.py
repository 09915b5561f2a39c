"""Config plumbing shared by the entry points: resolvers and the run directory."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from headstart.run.wandb_mode import wandb_offline


def register_resolvers() -> None:
    """Resolvers the configs use; called explicitly by each entry point (no import side effects)."""
    OmegaConf.register_new_resolver("hs_wandb_offline", wandb_offline, replace=True)
    # the working directory, also where Hydra's own ${hydra:runtime.cwd} is not set (sweeper setup)
    OmegaConf.register_new_resolver("hs_cwd", os.getcwd, replace=True)
    OmegaConf.register_new_resolver("hs_sqlite", sqlite_url, replace=True)
    OmegaConf.register_new_resolver("hs_sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("hs_resume_seed", resume_seed, replace=True)
    OmegaConf.register_new_resolver("hs_direction", lambda mode: {"max": "maximize", "min": "minimize"}[mode], replace=True)


def sqlite_url(path: str) -> str:
    """``sqlite:///<path>``, creating the folder (SQLite will not)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"


def resume_seed(seed: int, storage: str, study_name: str) -> int:
    """The sampler seed of an Optuna search: ``seed`` plus the trials the study already holds.

    A resumed search re-creates its sampler; with the same seed its random start-up trials would
    repeat the first run's parameters exactly, so each resumption draws from a new stream.
    """
    path = Path(str(storage).removeprefix("sqlite:///"))
    if not path.is_file():
        return int(seed)
    try:
        with sqlite3.connect(path) as db:
            (count,) = db.execute(
                "select count(*) from trials join studies on trials.study_id = studies.study_id"
                " where studies.study_name = ?", (study_name,),
            ).fetchone()
    except sqlite3.Error:  # not an Optuna database yet
        return int(seed)
    return int(seed) + int(count)


def sweep_group() -> str | None:
    """In a multirun, the sweep directory's name (all jobs' W&B runs share it); else None."""
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return None


def output_dir(cfg: DictConfig) -> str:
    """The run directory (``paths.output_dir``: Hydra's output dir of this job; a multirun job's own folder)."""
    return str(cfg.paths.output_dir)
