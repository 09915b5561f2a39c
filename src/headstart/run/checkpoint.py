"""Rebuild a training run from its checkpoint alone (eval.py, predict.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from headstart.run.build import Built, apply_overrides, build
from headstart.run.errors import ConfigError

OVERRIDABLE = ("data", "task", "model")


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load with ``weights_only=True``; a checkpoint without headstart meta is a clear error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "headstart" not in checkpoint or not checkpoint["headstart"]:
        raise ConfigError(f"{path}: not a headstart checkpoint (no 'headstart' meta in it)")
    return checkpoint


def choice_overrides(ckpt_path: str, given: list[str]) -> list[str]:
    """``task=… model=… data=…`` of the run that wrote ``ckpt_path``, for those not in ``given``.

    eval.py and predict.py compose their config with these, so ``data.<key>=…`` overrides of
    the checkpoint's own data config are accepted on the command line.
    """
    if not Path(ckpt_path).is_file():
        return []
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    choices = (checkpoint.get("headstart") or {}).get("choices") or {}
    given_keys = {o.lstrip("+~").split("=", 1)[0] for o in given}
    return [f"{key}={value}" for key, value in choices.items() if value and key not in given_keys]


def with_checkpoint_choices(argv: list[str]) -> list[str]:
    """``sys.argv`` with the checkpoint's group choices inserted after the program name."""
    paths = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("ckpt_path=")]
    return [argv[0], *choice_overrides(paths[0], argv[1:]), *argv[1:]] if paths else argv


def rebuild(cfg: DictConfig, checkpoint: dict[str, Any]) -> Built:
    """The training config from the checkpoint, with this command's trainer, paths and loggers,
    and its ``data.* / task.* / model.*`` overrides; weights loaded from the checkpoint."""
    meta = checkpoint["headstart"]
    run_cfg = OmegaConf.create(meta["config"])
    for key in ("trainer", "paths", "logger", "callbacks", "seed"):
        run_cfg[key] = cfg.get(key)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    same = {f"{key}={value}" for key, value in (meta.get("choices") or {}).items()}
    overrides = [o for o in overrides if o not in same]
    run_cfg = apply_overrides(run_cfg, overrides, OVERRIDABLE)
    built = build(run_cfg, meta=meta, for_training=False)
    built.task.load_state_dict(checkpoint["state_dict"])
    return built
