"""Checks that run before any work: does the chosen model serve the chosen task?"""

from __future__ import annotations

import json
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


# Files of a transformers directory whose ``auto_map`` points at Python modules in the directory.
REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
                     "feature_extractor_config.json", "image_processor_config.json")


def remote_code_file(directory: str | Path) -> Path | None:
    """The first config file of a transformers directory that maps classes to its own code
    (a top-level ``auto_map``), or None."""
    for name in REMOTE_CODE_FILES:
        file = Path(directory) / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(errors="replace"))
        except json.JSONDecodeError:
            continue  # not ours to judge here: transformers reports a broken config itself
        if isinstance(data, dict) and data.get("auto_map"):
            return file
    return None


def check_remote_code(model: DictConfig, rebuild: dict | None = None) -> None:
    """A local model directory (``model.checkpoint``, or a checkpoint's rebuild directories) whose
    config maps classes to its own code (``auto_map``) is refused unless ``model.trust_remote_code=true``.

    headstart builds the transformers class it wraps in any case (``from_pretrained`` is never
    given ``trust_remote_code``), so a trusted directory loads into that class and its Python
    files are still never run; the flag says the user has looked at the directory.
    """
    if model.get("trust_remote_code", False):
        return
    directories = [model.get("checkpoint"), *((rebuild or {}).get(k) for k in ("checkpoint", "tokenizer_dir"))]
    for directory in directories:
        if not isinstance(directory, str) or not Path(directory).is_dir():
            continue
        file = remote_code_file(directory)
        if file is not None:
            raise ConfigError(
                f"{file}: names its own code (auto_map); headstart does not load a model directory with custom "
                "code unless model.trust_remote_code=true (it then loads the weights into the transformers class "
                "headstart wraps and still runs none of the directory's Python)"
            )
