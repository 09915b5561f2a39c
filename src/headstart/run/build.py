"""Turn a composed config into (datamodule, task, trainer); used by train, eval and predict.

The order is the contract between the parts: the model is built first and tells the data
what it needs (``datamodule.configure(backbone.data_spec())``); the data tells the task
what it needs (``datamodule.info()``, e.g. the label list); then the task is built around
the backbone. When a checkpoint is reloaded, both come from the checkpoint's meta instead,
so no hub and no training data are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from headstart.run.checks import check_pairing, check_remote_code
from headstart.run.composition import recorded_overrides
from headstart.run.errors import ConfigError
from headstart.run.literals import check_literals
from headstart.run.meta import FORMAT, check_kwargs
from headstart.run.resume import resumed_meta, reuse_run_tokenizer, wandb_resume_kwargs

# Keys in task/model configs that describe the config itself, not constructor arguments.
TASK_META_KEYS = ("name", "monitor", "monitor_mode")
MODEL_META_KEYS = ("name", "tasks", "trust_remote_code")


@dataclass
class Built:
    datamodule: LightningDataModule
    task: Any
    trainer: Trainer


def without(node: DictConfig, keys: tuple[str, ...]) -> DictConfig:
    """A copy of ``node`` without ``keys`` (interpolations into the root still resolve)."""
    copy = OmegaConf.masked_copy(node, [k for k in node.keys() if k not in keys])
    copy._set_parent(node._get_parent())
    return copy


def run_name(cfg: DictConfig) -> str:
    """task-model plus the overrides that make this run differ (readable in W&B)."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    name = f"{cfg.task.name}-{cfg.model.name}"
    if HydraConfig.initialized():
        overrides = HydraConfig.get().job.override_dirname
        if overrides:
            name += f"-{overrides}"
    return name[:128]


def group_choices(cfg: DictConfig) -> dict[str, str | None]:
    """The task/model/data config names this run was composed from (eval/predict reuse them)."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    return {
        "task": choices.get("task") or cfg.task.name,
        "model": choices.get("model") or cfg.model.name,
        "data": choices.get("data"),
    }


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The configured callbacks; a progress bar or model summary the trainer turns off is left out."""
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None and "_target_" in node]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if not cfg.trainer.get("enable_model_summary", True):
        callbacks = [cb for cb in callbacks if not isinstance(cb, ModelSummary)]
    return callbacks


def build_loggers(cfg: DictConfig, resumed: dict[str, Any] | None = None) -> list[Logger]:
    """The configured loggers; resuming (``resumed``: the checkpoint's meta), W&B continues its run."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None or "_target_" not in node:
            continue
        resume = wandb_resume_kwargs(resumed or {}) if node._target_.endswith("WandbLogger") else {}
        if node._target_.endswith("WandbLogger") and not node.get("name"):
            loggers.append(instantiate(node, name=run_name(cfg), **resume))
        else:
            loggers.append(instantiate(node, **resume))
    return loggers


def build(
    cfg: DictConfig, meta: dict[str, Any] | None = None, for_training: bool = True, resumed: dict[str, Any] | None = None,
    ckpt_path: str = "",
) -> Built:
    """Instantiate everything. ``meta``: a checkpoint's headstart meta (eval/predict; checked by
    run/meta.py, ``ckpt_path`` names it in errors); ``resumed``: the meta of the checkpoint a
    training run resumes from, when the caller has read it already.

    A checkpoint's ``model_rebuild`` and ``data_info`` are keyword arguments of the constructors
    this config names, passed directly (never merged into a config that is instantiated).
    """
    check_pairing(cfg)
    check_literals(cfg)  # data.source=folders, data.on_error=ignore: one line before anything is built
    model_cfg = without(cfg.model, MODEL_META_KEYS)
    rebuild_kwargs = rebuild_arguments(model_cfg, meta, ckpt_path)
    check_remote_code(cfg.model, rebuild_kwargs)  # a model directory's auto_map: one line unless trusted
    if meta is not None:
        backbone = instantiate(model_cfg, _partial_=True, _convert_="all")(**rebuild_kwargs)
    else:
        backbone = instantiate(model_cfg, _convert_="all")
    if resumed is None:
        resumed = resumed_meta(cfg.get("ckpt_path")) if for_training and meta is None else {}
    reuse_run_tokenizer(backbone, resumed)  # a retrained tokenizer would not be the same vocabulary
    datamodule = instantiate(cfg.data, _convert_="all")
    # One explicit exchange: the model states its input needs; the data may answer with what
    # the model needs back (e.g. a tokenizer trained on the task's text for a tiny preset).
    answer = datamodule.configure(backbone.data_spec())
    if answer:
        backbone.attach(**answer)
    if for_training and hasattr(backbone, "save_for_rebuild"):
        backbone.save_for_rebuild()  # the files rebuild_kwargs() points at (e.g. a preset's tokenizer)
    task_cfg = without(cfg.task, TASK_META_KEYS)
    if meta is not None:
        info = check_kwargs(dict(meta["data_info"]), get_class(task_cfg._target_), ckpt_path, "data_info")
    else:
        info = datamodule.info()
    task = build_task(cfg, task_cfg, backbone, info)
    task.meta = {
        "format": FORMAT,
        "compose": {"config_name": "train", "overrides": recorded_overrides()},
        "choices": group_choices(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data_info": info,
        "model_rebuild": backbone.rebuild_kwargs(),
    }
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg),
        logger=build_loggers(cfg, resumed) if for_training or cfg.get("logger") else False,
        _convert_="all",
    )
    return Built(datamodule, task, trainer)


def rebuild_arguments(model_cfg: DictConfig, meta: dict[str, Any] | None, ckpt_path: str) -> dict[str, Any]:
    """A checkpoint's ``model_rebuild``, checked against the backbone's constructor ({} when training)."""
    if meta is None:
        return {}
    return check_kwargs(dict(meta.get("model_rebuild") or {}), get_class(model_cfg._target_), ckpt_path, "model_rebuild")


def build_task(cfg: DictConfig, task_cfg: DictConfig, backbone: Any, info: dict[str, Any]) -> Any:
    """The task around ``backbone``; ``info`` (the data's answer, or a checkpoint's ``data_info``)
    goes to the constructor directly. A constructor's own TypeError/ValueError (e.g. task.nsp=true
    on a model without segment embeddings) is a config mistake: one line, not a traceback."""
    try:
        return instantiate(task_cfg, _partial_=True, _convert_="all")(backbone=backbone, **info)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"task={cfg.task.name}: {err}") from err
    except InstantiationException as err:
        if isinstance(err.__cause__, (TypeError, ValueError)):
            raise ConfigError(f"task={cfg.task.name}: {err.__cause__}") from err
        raise


def apply_overrides(base: DictConfig, overrides: list[str], prefixes: tuple[str, ...]) -> DictConfig:
    """Apply command-line ``key=value`` overrides whose key starts with one of ``prefixes``."""
    picked = [o.lstrip("+~") for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] in prefixes]
    group_choices = [o for o in picked if "." not in o.split("=", 1)[0]]
    if group_choices:
        raise ConfigError(
            f"{', '.join(group_choices)}: a checkpoint fixes task, model and data; override their keys instead "
            "(e.g. data.path=..., data.batch_size=...)"
        )
    with open_dict(base):
        return OmegaConf.merge(base, OmegaConf.from_dotlist(picked))
