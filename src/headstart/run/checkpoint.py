"""Rebuild a training run from its checkpoint alone (eval.py, predict.py).

A checkpoint may come from anywhere, so it is treated as data: it is read with
``weights_only=True`` (run/safe_load.py), and the config stored in it may only name
``_target_``s among headstart's components or on a short allow-list of library classes,
checked over the whole stored meta before anything is instantiated.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from headstart.run.build import Built, apply_overrides, build
from headstart.run.errors import ConfigError
from headstart.run.safe_load import safe_load

OVERRIDABLE = ("data", "task", "model")
CHOICE_KEYS = ("task", "model", "data")
# Library classes the shipped configs name (grep conf/ for _target_), and headstart's model and
# data components; anything else (os.system, shutil.copyfile, headstart.run.* helpers that write
# files) is refused when it comes from a checkpoint.
ALLOWED_TARGETS = frozenset({
    "headstart.run.fsdp.TransformerBlockPolicy",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.EMAWeightAveraging",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.RichModelSummary",
    "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.TensorBoardLogger",
    "lightning.pytorch.loggers.WandbLogger",
    "lightning.pytorch.strategies.DDPStrategy",
    "lightning.pytorch.strategies.FSDPStrategy",
})
ALLOWED_PREFIXES = (
    *(f"headstart.{part}." for part in ("backbones", "callbacks", "data", "heads", "losses", "metrics", "ops", "tasks")),
    "torch.optim.", "torchmetrics.",
)
_NAME = re.compile(r"^\w[\w/-]*$")  # a config name; no ".." out of conf/


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load with ``weights_only=True``; a checkpoint without headstart meta is a clear error."""
    checkpoint = safe_load(path)
    if "headstart" not in checkpoint or not checkpoint["headstart"]:
        raise ConfigError(f"{path}: not a headstart checkpoint (no 'headstart' meta in it)")
    check_targets(checkpoint["headstart"], path)
    return checkpoint


def check_targets(node: Any, path: str, key: str = "") -> None:
    """Refuse any ``_target_`` in ``node`` (a checkpoint's meta, walked whole) outside the allow-list."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not allowed_target(target):
            raise ConfigError(
                f"{path}: refused to load: {key or '<root>'}._target_={target} is not a headstart component "
                "nor on the allow-list (run/checkpoint.py ALLOWED_TARGETS); a checkpoint's config may not run other code"
            )
        for name, value in node.items():
            check_targets(value, path, f"{key}.{name}" if key else str(name))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, path, f"{key}[{i}]")


def allowed_target(target: Any) -> bool:
    return isinstance(target, str) and (target in ALLOWED_TARGETS or target.startswith(ALLOWED_PREFIXES))


def choice_overrides(ckpt_path: str, given: list[str]) -> list[str]:
    """``task=… model=… data=…`` of the run that wrote ``ckpt_path``, for those not in ``given``.

    eval.py and predict.py compose their config with these, so ``data.<key>=…`` overrides of
    the checkpoint's own data config are accepted on the command line. Only those three keys,
    with plain config names, are taken (a crafted checkpoint must not add Hydra overrides); an
    unreadable checkpoint gives none here and its one-line error from ``load_checkpoint``.
    """
    try:
        checkpoint = safe_load(ckpt_path, mmap=True)
    except (ConfigError, FileNotFoundError):
        return []
    choices = (checkpoint.get("headstart") or {}).get("choices") or {}
    given_keys = {o.lstrip("+~").split("=", 1)[0] for o in given}
    return [
        f"{key}={choices[key]}" for key in CHOICE_KEYS
        if isinstance(choices.get(key), str) and _NAME.match(choices[key]) and key not in given_keys
    ]


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
