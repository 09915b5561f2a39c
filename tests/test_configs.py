"""Every config file under conf/ composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch import Trainer

from conftest import make_cfg
from headstart.run.build import build
from headstart.run.checks import CONF_DIR, models_serving
from headstart.run.config import register_resolvers

GROUP = lambda name: sorted(p.stem for p in (CONF_DIR / name).glob("*.yaml"))  # noqa: E731
EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix("")) for p in (CONF_DIR / "experiment").rglob("*.yaml")
)


@pytest.mark.parametrize("name", ["train", "eval", "predict"])
def test_primary_configs_compose(tmp_path: Path, name: str) -> None:
    extra = {"train": [], "eval": ["ckpt_path=x.ckpt"], "predict": ["ckpt_path=x.ckpt", "inputs=x.png"]}[name]
    cfg = make_cfg(tmp_path, *extra, config_name=name)
    assert cfg.task.name == "image_classification" and cfg.model.name == "vit"


@pytest.mark.parametrize("task", GROUP("task"))
def test_each_task_builds_with_its_default_model_and_data(tmp_path: Path, task: str) -> None:
    cfg = make_cfg(tmp_path, f"task={task}", "model.preset=tiny")
    assert cfg.model.name in models_serving(task)
    built = build(cfg)
    assert built.task.backbone is not None


@pytest.mark.parametrize("model", GROUP("model"))
def test_each_model_builds_tiny_for_every_task_it_serves(tmp_path: Path, model: str) -> None:
    tasks = list(make_cfg(tmp_path, f"model={model}").model.tasks)
    assert tasks, f"model/{model}.yaml lists no tasks"
    for task in tasks:
        build(make_cfg(tmp_path, f"task={task}", f"model={model}", "model.preset=tiny"))


@pytest.mark.parametrize("data", GROUP("data"))
def test_each_data_config_instantiates(tmp_path: Path, data: str) -> None:
    cfg = make_cfg(tmp_path, f"data={data}")
    instantiate(cfg.data)  # hub presets load nothing until setup


@pytest.mark.parametrize("optim", GROUP("optim"))
def test_each_optim_config_builds_an_optimizer(tmp_path: Path, optim: str) -> None:
    cfg = make_cfg(tmp_path, f"optim={optim}", "model.preset=tiny")
    built = build(cfg)
    optimizer = instantiate(cfg.optim.optimizer)([{"params": list(built.task.parameters())}])
    instantiate(cfg.optim.scheduler)(optimizer, total_steps=10)


@pytest.mark.parametrize("trainer", GROUP("trainer"))
def test_each_trainer_config_instantiates(tmp_path: Path, trainer: str) -> None:
    cfg = make_cfg(tmp_path, f"trainer={trainer}")
    if trainer in ("gpu", "fsdp"):  # no GPU here: build the strategy object, not the Trainer
        if "_target_" in (cfg.trainer.strategy or {}):
            instantiate(cfg.trainer.strategy)
        return
    assert isinstance(instantiate(cfg.trainer, accelerator="cpu"), Trainer)


@pytest.mark.parametrize("logger", GROUP("logger"))
def test_each_logger_config_instantiates(tmp_path: Path, logger: str) -> None:
    cfg = make_cfg(tmp_path, f"logger={logger}")
    loggers = [instantiate(node) for node in cfg.logger.values()]
    assert loggers


@pytest.mark.parametrize("callbacks", GROUP("callbacks"))
def test_each_callbacks_config_instantiates(tmp_path: Path, callbacks: str) -> None:
    cfg = make_cfg(tmp_path, f"callbacks={callbacks}", fast=False)
    for node in (cfg.callbacks or {}).values():
        instantiate(node)


@pytest.mark.parametrize("debug", GROUP("debug"))
def test_each_debug_config_composes(tmp_path: Path, debug: str) -> None:
    build(make_cfg(tmp_path, f"debug={debug}", "model.preset=tiny"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_builds(tmp_path: Path, experiment: str) -> None:
    cfg = make_cfg(tmp_path, f"experiment={experiment}", "model.preset=tiny", "data.source=synthetic")
    build(cfg)


def test_paths_and_hydra_configs_compose(tmp_path: Path) -> None:
    for name in GROUP("paths") + GROUP("hydra"):
        assert name == "default"
    cfg = make_cfg(tmp_path)
    assert cfg.paths.output_dir == str(tmp_path)


@pytest.mark.parametrize("search", GROUP("hparams_search"))
def test_each_hparams_search_composes(tmp_path: Path, search: str) -> None:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    assert cfg.optimized_metric == cfg.task.monitor == "val/acc"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper.params and "optuna" in cfg.hydra.sweeper._target_.lower()


def test_slurm_launcher_composes(tmp_path: Path) -> None:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"], return_hydra_config=True)
    assert "Slurm" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.max_num_timeout > 0


def test_the_defaults_table_in_docs_is_current() -> None:
    """docs/defaults.md is written from the composed configs (scripts/defaults_table.py); a changed
    default without the regenerated table fails here, and every key shown has a reason."""
    from scripts.defaults_table import KEYS, SOURCES, main

    assert main(["--check"]) == 0, "docs/defaults.md is stale: python -m scripts.defaults_table"
    assert all(key in SOURCES for key, _ in KEYS)
