"""``python eval.py ckpt_path=... [split=val|test] [data.path=...]``: metrics of a checkpoint.

Without ``split`` it tests when the data has a test split and validates otherwise, and says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from headstart.run.build import Built, build
from headstart.run.checkpoint import load_checkpoint, rebuild
from headstart.run.config import output_dir
from headstart.run.console import print_run_locations
from headstart.run.entry import checkpoint_command
from headstart.run.errors import ConfigError
from headstart.run.extras import extras
from headstart.run.results import scalar_metrics, write_metrics
from headstart.run.threads import apply_thread_policy


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Validate or test the checkpoint on its data (or the data named by overrides).

    ``split=null`` (the default) tests when the data has a test split and validates otherwise.
    """
    extras(cfg)
    apply_thread_policy(cfg)  # intra-op threads = the cores this process may use (run/threads.py)
    lightning.seed_everything(cfg.seed, workers=True)
    if cfg.get("ckpt_path"):
        built = rebuild(cfg, load_checkpoint(cfg.ckpt_path))
    else:
        built = build_task_model(cfg)
    trainer, task, datamodule = built.trainer, built.task, built.datamodule
    split = choose_split(cfg.get("split"), datamodule, announce=trainer.is_global_zero)
    if split == "val":
        raw = trainer.validate(task, datamodule=datamodule)
    else:
        raw = trainer.test(task, datamodule=datamodule)
    results: dict[str, Any] = {}
    for metrics in raw:
        results.update(scalar_metrics(metrics))
    results["ckpt_path"] = str(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if not cfg.get("ckpt_path"):
        results["model_checkpoint"] = str(cfg.model.checkpoint)
    if trainer.is_global_zero:
        path = write_metrics(Path(output_dir(cfg)) / "metrics.json", results)
        print_run_locations(output_dir(cfg), {"metrics": path}, trainer.loggers)
    return results


def build_task_model(cfg: DictConfig) -> Built:
    """``eval.py task=... model.checkpoint=<transformers task model> [data...]`` (no ``ckpt_path``):
    the task built on that model, which must bring a head that fits the data (its labels by name);
    scoring a freshly initialised head would measure nothing, so that is one line instead."""
    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    named = any(o.split("=", 1)[0].lstrip("+") == "model.checkpoint" for o in given)
    if cfg.model.get("preset") or not cfg.model.get("checkpoint") or not named:
        raise ConfigError("eval.py needs ckpt_path=<a headstart checkpoint>, or model.checkpoint=<a transformers task model "
                          "directory or hub id> (with task=... and the data) to score that model")
    built = build(cfg, for_training=False)
    kept = getattr(built.task, "kept_head", None)
    if kept is None:
        raise ConfigError(f"model.checkpoint={cfg.model.checkpoint} has no task head for task={cfg.task.name} (a plain encoder); "
                          "eval.py scores a fine-tuned task model or a headstart checkpoint (ckpt_path=...)")
    if ": kept " not in kept:
        raise ConfigError(f"{kept}; eval.py scores only a head that fits the data")
    return built


def choose_split(requested: str | None, datamodule: Any, announce: bool = True) -> str:
    """``requested`` (val or test), or when None: test if the data has a test split, else val.

    An explicit ``test`` on data without a test split is a one-line ConfigError.
    """
    if requested not in (None, "val", "test"):
        raise ConfigError(
            f"split={requested} is not one of val, test (or leave it out: test if the data has one, else val)"
        )
    if requested == "val":
        return "val"
    datamodule.setup("test")  # datamodules know whether a test split exists only after setup
    if datamodule.has_test:
        split = "test"
    elif requested == "test":
        raise ConfigError("the data has no test split; use split=val, leave split out, or point data.test_path at one")
    else:
        split = "val"
    if requested is None and announce:
        reason = "the data has a test split" if split == "test" else "the data has no test split"
        print(f"eval split: {split} ({reason}; split=val|test chooses)")
    return split


main = checkpoint_command("eval", evaluate)


if __name__ == "__main__":
    main()
