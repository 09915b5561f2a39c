"""Rebuild a training run from its checkpoint (eval.py, predict.py); a checkpoint is data.

A checkpoint may come from anywhere, so nothing in it can reach a callable:

- it is read with ``weights_only=True`` (run/safe_load.py): a pickle of code is refused;
- its meta is checked against a schema (run/meta.py): plain data, no Hydra key anywhere;
- the config is *recomposed* from the installed ``conf/`` with the training command's
  overrides, each checked first (run/composition.py), so every ``_target_`` that is
  instantiated is one the installed project names;
- ``model_rebuild`` and ``data_info`` are passed as keyword arguments to the constructors that
  config names, and must be parameters of them; they are never merged into a config;
- the stored config is a record: compared with the recomposed one, with one line saying what
  differs. A record naming a Hydra key (``_target_``...) that the recomposed config does not
  have is refused: it is a tampered checkpoint or one from an incompatible headstart.

Checkpoints written before the composition was stored (no ``format`` in the meta) are refused
with one line naming ``python -m scripts.migrate_checkpoint``, which rewrites their meta after
showing what it found; their stored config is never instantiated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from headstart.run.build import Built, apply_overrides, build
from headstart.run.composition import checked_overrides, recompose
from headstart.run.errors import ConfigError
from headstart.run.meta import FORMAT, OPTION_NAME, check_meta, refuse, reserved_key
from headstart.run.safe_load import safe_load

OVERRIDABLE = ("data", "task", "model")
CHOICE_KEYS = ("task", "model", "data")
# Taken from eval's / predict's own command, never from the checkpoint.
OWN_KEYS = ("trainer", "paths", "logger", "callbacks", "seed", "ckpt_path")
# Left out of the record comparison line: they describe the training machine and run directory.
NOT_COMPARED = ("trainer", "paths", "logger", "callbacks", "ckpt_path", "hydra")
MIGRATE = "python -m scripts.migrate_checkpoint"


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load with ``weights_only=True`` and check its meta (run/meta.py); one line when refused."""
    checkpoint = safe_load(path)
    if "headstart" not in checkpoint or not checkpoint["headstart"]:
        raise ConfigError(f"{path}: not a headstart checkpoint (no 'headstart' meta in it)")
    meta = checkpoint["headstart"]
    check_meta(meta, path)
    if meta.get("format") != FORMAT or not meta.get("compose"):
        found = meta.get("format", "none")
        raise ConfigError(
            f"{path}: written by an older headstart (meta format {found}, this one reads {FORMAT}): it does not "
            f"store the overrides that composed it; `{MIGRATE} {path}` shows what it found and rewrites it"
        )
    return checkpoint


def choice_overrides(ckpt_path: str, given: list[str]) -> list[str]:
    """``task=… model=… data=…`` of the run that wrote ``ckpt_path``, for those not in ``given``.

    eval.py and predict.py compose their own config with these, so ``data.<key>=…`` overrides
    on their command line find the keys. Only those three keys, with plain config names, are
    taken; an unreadable checkpoint gives none here and its one-line error from ``load_checkpoint``.
    """
    try:
        checkpoint = safe_load(ckpt_path, mmap=True)
    except (ConfigError, FileNotFoundError):
        return []
    meta = checkpoint.get("headstart")
    choices = (meta.get("choices") if isinstance(meta, dict) else None) or {}
    if not isinstance(choices, dict):
        return []
    given_keys = {o.lstrip("+~").split("=", 1)[0] for o in given}
    return [
        f"{key}={choices[key]}" for key in CHOICE_KEYS
        if isinstance(choices.get(key), str) and OPTION_NAME.match(choices[key]) and key not in given_keys
    ]


def with_checkpoint_choices(argv: list[str]) -> list[str]:
    """``sys.argv`` with the checkpoint's group choices inserted after the program name."""
    paths = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("ckpt_path=")]
    return [argv[0], *choice_overrides(paths[0], argv[1:]), *argv[1:]] if paths else argv


# Keys added after checkpoints were written that change what a model computes: a stored record
# without the key was trained with the old behaviour, which this value restores.
BEHAVIOUR_BEFORE = {"task.pooling": "cls"}  # text classification read the [CLS] state before task.pooling


def training_config(checkpoint: dict[str, Any], path: str) -> DictConfig:
    """The run's training config, recomposed from the installed conf/ with its checked overrides;
    the stored record is compared with it (one line printed; a foreign Hydra key refused)."""
    meta = checkpoint["headstart"]
    overrides = checked_overrides(list(meta["compose"]["overrides"]), path)
    train_cfg = recompose(overrides, path)
    record = meta.get("config") or {}
    for key, before in BEHAVIOUR_BEFORE.items():
        stored = _stored(record, key)
        if stored is _MISSING and OmegaConf.select(train_cfg, key, default=_MISSING) is not _MISSING:
            OmegaConf.update(train_cfg, key, before, force_add=False)
            print(f"{path}: written before {key} existed: {key}={before}, as it was trained")
    print(compare_record(record, train_cfg, path, len(overrides)))
    return train_cfg


def _stored(record: Any, key: str) -> Any:
    """The record's value at dotted ``key`` (plain dicts, as the meta check left them), or _MISSING."""
    node = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def rebuild(cfg: DictConfig, checkpoint: dict[str, Any]) -> Built:
    """The training config (recomposed) with this command's trainer, paths and loggers and its
    ``data.* / task.* / model.*`` overrides; weights loaded from the checkpoint."""
    path = str(cfg.get("ckpt_path"))
    meta = checkpoint["headstart"]
    run_cfg = training_config(checkpoint, path)
    with open_dict(run_cfg):
        for key in OWN_KEYS:
            run_cfg[key] = cfg.get(key)
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    same = {f"{key}={value}" for key, value in (meta.get("choices") or {}).items()}
    overrides = [o for o in overrides if o not in same]
    run_cfg = apply_overrides(run_cfg, overrides, OVERRIDABLE)
    built = build(run_cfg, meta=meta, for_training=False, ckpt_path=path)
    built.task.load_state_dict(checkpoint["state_dict"])
    return built


# ---- the stored record against the recomposed config -------------------------------------------
_MISSING = object()


def record_view(train_cfg: DictConfig, record: dict[str, Any]) -> dict[str, Any]:
    """``train_cfg`` resolved as the training run resolved it: with the record's run paths where
    they are literal strings (so ``${paths.output_dir}/...`` values compare equal)."""
    view = copy.deepcopy(train_cfg)
    paths = record.get("paths")
    if isinstance(paths, dict) and "paths" in view:
        with open_dict(view):
            for key, value in paths.items():
                if key in view.paths and isinstance(value, str) and "${" not in value and "\\" not in value:
                    view.paths[key] = value
    try:
        return OmegaConf.to_container(view, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation into a runtime this process lacks
        return OmegaConf.to_container(view, resolve=False)


def differences(stored: Any, now: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    if isinstance(stored, dict) and isinstance(now, dict):
        for key in sorted(set(stored) | set(now), key=str):
            yield from differences(stored.get(key, _MISSING), now.get(key, _MISSING), f"{where}.{key}" if where else str(key))
    elif stored != now:
        yield where, stored, now


def holds_reserved(node: Any) -> bool:
    if isinstance(node, dict):
        return any(reserved_key(k) or holds_reserved(v) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return any(holds_reserved(v) for v in node)
    return False


def compare_record(record: dict[str, Any], train_cfg: DictConfig, path: str, n_overrides: int) -> str:
    """One line: whether the recomposed config matches the stored record, and where not. A record
    that has a Hydra key where the recomposed config has not that key and value is refused."""
    shown = []
    for where, stored, now in differences(record, record_view(train_cfg, record)):
        if stored is not _MISSING and (reserved_key(where.rsplit(".", 1)[-1]) or holds_reserved(stored)):
            raise refuse(path, f"its stored config has {where}={str(stored)[:120]!r}, which the installed conf/ does not "
                               f"compose from its overrides (a tampered checkpoint, or `{MIGRATE} {path}`)")
        if where.split(".", 1)[0].split("[", 1)[0] not in NOT_COMPARED:
            show = lambda v: "absent" if v is _MISSING else repr(v)[:40]  # noqa: E731
            shown.append(f"{where} (stored {show(stored)}, now {show(now)})")
    head = f"checkpoint config: recomposed from the installed conf/ with the run's {n_overrides} overrides"
    if not shown:
        return f"{head}; the stored record agrees"
    more = f" (+{len(shown) - 3} more)" if len(shown) > 3 else ""
    return f"{head}; differs from the stored record at {', '.join(shown[:3])}{more}"
