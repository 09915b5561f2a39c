"""``python eval.py ckpt_path=... [split=val|test] [data.path=...]``: metrics of a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning
from omegaconf import DictConfig

from headstart.run.checkpoint import load_checkpoint, rebuild, with_checkpoint_choices
from headstart.run.checks import CONF_DIR
from headstart.run.config import output_dir, register_resolvers
from headstart.run.errors import ConfigError, one_line_errors
from headstart.run.results import scalar_metrics, write_metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Validate or test the checkpoint on its data (or the data named by overrides)."""
    lightning.seed_everything(cfg.seed, workers=True)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    built = rebuild(cfg, checkpoint)
    trainer, task, datamodule = built.trainer, built.task, built.datamodule
    if cfg.split == "val":
        raw = trainer.validate(task, datamodule=datamodule)
    elif cfg.split == "test":
        datamodule.setup("test")
        if not datamodule.has_test:
            raise ConfigError("the data has no test split; use split=val or point data.test_path at one")
        raw = trainer.test(task, datamodule=datamodule)
    else:
        raise ConfigError(f"split={cfg.split} is not one of val, test")
    results: dict[str, Any] = {}
    for metrics in raw:
        results.update(scalar_metrics(metrics))
    results["ckpt_path"] = str(cfg.ckpt_path)
    if trainer.is_global_zero:
        print(f"metrics: {write_metrics(Path(output_dir(cfg)) / 'metrics.json', results)}")
    return results


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    register_resolvers()
    sys.argv = with_checkpoint_choices(sys.argv)
    _main()


if __name__ == "__main__":
    main()
