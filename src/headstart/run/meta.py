"""The headstart meta a checkpoint carries, checked as data before any of it is used.

What train writes (``task.meta``, saved under ``checkpoint["headstart"]``):

- ``format``: :data:`FORMAT` (checkpoints before it stored no composition; see run/checkpoint.py)
- ``compose``: ``{"config_name": "train", "overrides": [...]}``, the command-line overrides that
  composed the run's config, as strings (run/composition.py checks and replays them)
- ``choices``: the task / model / data config names (eval and predict compose with them)
- ``config``: the resolved config, a record only: never instantiated, only compared
- ``data_info``: keyword arguments of the task's constructor (e.g. the label list)
- ``model_rebuild``: keyword arguments of the backbone's constructor that rebuild it offline
- ``threads``, ``wandb_run_id``: what a resumed run continues with

Everything but the record must be plain data (None, bool, int, float, str, and lists / dicts of
them), with no Hydra key (``_target_``, ``_partial_``, ``_args_``, ``_call_``, ``_recursive_``,
``_convert_``, or any other ``_name_``) at any depth; ``data_info`` and ``model_rebuild`` name only
parameters of the constructors the installed config names.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from headstart.run.errors import ConfigError

FORMAT = 2
# Hydra's instantiation keys, and any other key shaped like them (_kwargs_, _set_, ...).
RESERVED = re.compile(r"^_\w*_$")
SCALARS = (type(None), bool, int, float, str)
OPTION_NAME = re.compile(r"^\w[\w/-]*$")  # a config name; no ".." out of conf/
_RUN_ID = re.compile(r"^[\w-]{1,128}$")
META_KEYS = frozenset({"format", "compose", "choices", "config", "data_info", "model_rebuild", "threads", "wandb_run_id"})


def refuse(path: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: refused to load: {what}; a checkpoint holds data, never code to run")


def reserved_key(key: Any) -> bool:
    return isinstance(key, str) and bool(RESERVED.match(key))


def check_plain(node: Any, path: str, where: str) -> None:
    """``node`` is plain data without Hydra keys, else a one-line refusal naming ``where``."""
    if isinstance(node, SCALARS):
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, (str, int)):
                raise refuse(path, f"{where} has a key of type {type(key).__name__}")
            if reserved_key(key):
                raise refuse(path, f"{where}.{key} is a Hydra key ({key}={str(value)[:80]!r})")
            check_plain(value, path, f"{where}.{key}")
        return
    if isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_plain(value, path, f"{where}[{i}]")
        return
    raise refuse(path, f"{where} holds a {type(node).__name__}, not plain data")


def check_meta(meta: Any, path: str) -> None:
    """The schema of :mod:`this module's doc <headstart.run.meta>`, except the record's contents
    (compared against the recomposed config in run/checkpoint.py) and the overrides' syntax."""
    if not isinstance(meta, dict):
        raise refuse(path, f"its headstart meta is a {type(meta).__name__}, not a dict")
    unknown = sorted(str(k) for k in meta if k not in META_KEYS)
    if unknown:
        raise refuse(path, f"its headstart meta has keys headstart never writes ({', '.join(unknown)[:120]})")
    for key in META_KEYS - {"config"}:
        check_plain(meta.get(key), path, key)
    if not isinstance(meta.get("config", {}), dict):
        raise refuse(path, "its stored config is not a dict")
    compose = meta.get("compose")
    if compose is not None:
        if not isinstance(compose, dict) or set(compose) - {"config_name", "overrides"}:
            raise refuse(path, "compose must be {config_name, overrides}")
        if compose.get("config_name", "train") != "train":
            raise refuse(path, f"compose.config_name={compose.get('config_name')!r} (only train is composed)")
        if not isinstance(compose.get("overrides"), list) or not all(isinstance(o, str) for o in compose["overrides"]):
            raise refuse(path, "compose.overrides must be a list of strings")
    for key, choice in (meta.get("choices") or {}).items():
        if choice is not None and not (isinstance(choice, str) and OPTION_NAME.match(choice)):
            raise refuse(path, f"choices.{key}={str(choice)[:80]!r} is not a config name")
    for key in ("data_info", "model_rebuild"):
        if not isinstance(meta.get(key, {}), dict):
            raise refuse(path, f"{key} is not a dict")
    threads = meta.get("threads")
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0):
        raise refuse(path, f"threads={threads!r} is not a positive int")
    run_id = meta.get("wandb_run_id")
    if run_id is not None and not (isinstance(run_id, str) and _RUN_ID.match(run_id)):
        raise refuse(path, f"wandb_run_id={str(run_id)[:80]!r} is not a W&B run id")


def check_kwargs(kwargs: dict[str, Any], target: Any, path: str, where: str) -> dict[str, Any]:
    """``kwargs`` (plain, checked by :func:`check_meta`) name only parameters of ``target``'s
    constructor (a class the installed config names); returns them, for a direct call."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing can be checked
        raise refuse(path, f"{where}: the constructor's parameters cannot be read") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = None
    else:
        allowed = {name for name, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    extra = sorted(k for k in kwargs if allowed is not None and k not in allowed)
    if extra:
        name = getattr(target, "__qualname__", str(target))
        raise refuse(path, f"{where} names {', '.join(extra)[:120]}, not parameters of {name}")
    return dict(kwargs)
