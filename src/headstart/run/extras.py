"""``extras``: what train/eval/predict do before any work (lightning-hydra-template's ``extras()``).

- Library noise is silenced always: the few warnings and log lines below, which repeat on every
  run and name nothing the user can act on. Errors and every other warning still show.
- ``extras.ignore_warnings=true`` silences all Python warnings.
- ``extras.enforce_tags=true`` without ``tags`` is a one-line ConfigError (never a prompt: CI has
  no stdin).
- ``extras.print_config`` is obeyed by ``console.print_config_tree``.
"""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig

from headstart.run.errors import ConfigError

# (start of the message as a regex, category). Why each carries nothing for the user:
NOISE_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # torch 2.11 deprecated LeafSpec; Lightning 2.6 still uses it internally, twice per run.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # data.num_workers is chosen on purpose (default: one per spare core); Lightning suggests more.
    (r".*does not have many workers which may be a bottleneck", PossibleUserWarning),
)
# Lightning's info lines that advertise its cloud products or restate the callbacks config.
NOISE_LOG_PREFIXES: tuple[str, ...] = (
    "💡 Tip:",
    "Trainer already configured with model summary callbacks",
)
# Loggers that print a table per evaluation whose numbers are already logged as metrics.
QUIET_LOGGERS: dict[str, int] = {"faster_coco_eval": logging.WARNING}  # COCO AP/AR tables (val/map...)
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropNoise(logging.Filter):
    """Drops INFO-or-lower records that start with a known noise prefix; never a warning or error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return not str(record.getMessage()).startswith(NOISE_LOG_PREFIXES)


def silence_library_noise() -> None:
    """Install the noise filters (idempotent: safe once per multirun job)."""
    for message, category in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _DropNoise) for f in logger.filters):
        logger.addFilter(_DropNoise())
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def extras(cfg: DictConfig) -> None:
    """Apply ``cfg.extras`` and the noise filters; call first in train/eval/predict."""
    silence_library_noise()
    options = cfg.get("extras") or {}
    if options.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if options.get("enforce_tags") and "tags" in cfg and not cfg.tags:
        raise ConfigError("extras.enforce_tags=true: name this run's tags, e.g. tags=[baseline,lr_sweep]")
    if "local" in cfg:
        # A local file without the header lands under cfg.local and overrides nothing.
        raise ConfigError(
            "conf/local/default.yaml: start the file with `# @package _global_` so its keys override the config"
        )
