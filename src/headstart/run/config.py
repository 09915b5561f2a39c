"""Config plumbing shared by the entry points: resolvers and the run directory."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from headstart.run.wandb_mode import wandb_offline


def register_resolvers() -> None:
    """Resolvers the configs use; called explicitly by each entry point (no import side effects)."""
    OmegaConf.register_new_resolver("hs_wandb_offline", wandb_offline, replace=True)


def output_dir(cfg: DictConfig) -> str:
    """The run directory (``paths.output_dir``: Hydra's output dir of this job; a multirun job's own folder)."""
    return str(cfg.paths.output_dir)
