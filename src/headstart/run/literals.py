"""One central check of option values: a headstart constructor argument typed ``Literal[...]``
(``data.source``, ``data.on_error``, ...) set to anything else is a one-line config error,
before anything is built. Datamodules declare their options in their signatures only."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

from hydra._internal.utils import _locate  # hydra.utils.get_class logs every non-class at ERROR
from omegaconf import DictConfig, ListConfig, OmegaConf

from headstart.run.errors import ConfigError


def literal_options(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{argument: allowed values}`` for each ``Literal``-typed ``__init__`` argument of ``cls``
    and its bases (a datamodule passes its loader settings to the base through ``**kwargs``)."""
    options: dict[str, tuple[Any, ...]] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("headstart."):
            continue
        try:  # the hints are strings (from __future__ import annotations): evaluate them
            parameters = inspect.signature(init, eval_str=True).parameters
        except Exception:  # noqa: BLE001 - a hint naming a TYPE_CHECKING-only type: nothing to check
            continue
        for name, param in parameters.items():
            if typing.get_origin(param.annotation) is Literal:
                options[name] = typing.get_args(param.annotation)
    return options


def check_literals(node: Any, key: str = "") -> None:
    """Walk ``node``; every headstart ``_target_`` gets its Literal arguments checked."""
    if isinstance(node, DictConfig):
        target = _value(node, "_target_")
        if isinstance(target, str) and target.startswith("headstart."):
            _check_node(node, key, target)
        for name in node.keys():
            check_literals(_value(node, name), f"{key}.{name}" if key else str(name))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            check_literals(_value(node, i), f"{key}[{i}]")


def _value(node: DictConfig | ListConfig, name: Any) -> Any:
    """``node[name]`` resolved; None when missing or not resolvable here (reported when built)."""
    try:
        return None if OmegaConf.is_missing(node, name) else node[name]
    except Exception:  # noqa: BLE001 - e.g. an interpolation into Hydra's runtime config
        return None


def _check_node(node: DictConfig, key: str, target: str) -> None:
    try:
        cls = _locate(target)
    except Exception:  # noqa: BLE001 - a target Hydra reports itself when it builds
        return
    if not inspect.isclass(cls):  # a factory function (e.g. a scheduler): its own checks apply
        return
    for name, allowed in literal_options(cls).items():
        value = _value(node, name) if name in node else None
        if isinstance(value, (str, int, bool)) and value not in allowed:
            names = "|".join(str(a) for a in allowed)
            raise ConfigError(f"{key}.{name}={value} is not one of {names}")
