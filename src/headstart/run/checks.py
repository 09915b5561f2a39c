"""Checks that run before any work: does the chosen model serve the chosen task?"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from headstart.run.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def models_serving(task: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the model configs whose ``tasks`` list contains ``task``."""
    names = []
    for path in sorted((conf_dir / "model").glob("*.yaml")):
        model = OmegaConf.load(path)
        if task in (model.get("tasks") or []):
            names.append(path.stem)
    return names


def check_pairing(cfg: DictConfig) -> None:
    """Fail early when ``model=`` does not serve ``task=``, naming the models that do."""
    task, model = cfg.task.name, cfg.model.name
    if task not in (cfg.model.get("tasks") or []):
        serving = models_serving(task)
        raise ConfigError(
            f"model={model} does not serve task={task}; models for {task}: {', '.join(serving) or 'none'}"
        )
