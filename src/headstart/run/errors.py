"""Errors a user can fix, shown as one line instead of a stack trace."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A wrong combination or value in the composed config."""


def user_errors() -> tuple[type[BaseException], ...]:
    from headstart.backbones.base import HubUnreachableError
    from headstart.callbacks.nonfinite import NonFiniteLossError
    from headstart.data.errors import DataError

    return (ConfigError, DataError, HubUnreachableError, NonFiniteLossError, FileNotFoundError, OmegaConfBaseException)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def original_message(err: BaseException) -> str:
    """The message the code raised, without the text torch wraps around an error re-raised from a
    DataLoader worker ("Caught DataError in DataLoader worker process 0. Original Traceback ...",
    see torch/_utils.py ExceptionWrapper): the last ``<ExcType>: <message>`` of that traceback."""
    text = str(err.args[0]) if err.args and isinstance(err.args[0], str) else str(err)
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    kind = type(err)
    heads = (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: ")
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        for head in heads:
            if lines[i].startswith(head):
                return "\n".join([lines[i][len(head):], *lines[i + 1:]])
    return lines[-1]


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (worker wrapping removed, whitespace runs collapsed)."""
    return " ".join(original_message(err).split())


def user_error_in(err: BaseException) -> BaseException | None:
    """``err`` if it is a user error, else the first user error it was raised from: Hydra wraps an
    error raised while instantiating (a hub checkpoint offline: ``HubUnreachableError``) in
    ``InstantiationException("Error in call to target ...")``, whose text is not the one line."""
    kinds = user_errors()
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        if isinstance(node, kinds) and not type(node).__module__.startswith("hydra."):
            return node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``; a user error exits with ``error: <message>`` (HYDRA_FULL_ERROR=1 shows the trace)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as raised:
            err = user_error_in(raised)
            if err is None:
                raise
            message = one_line(err)
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or in_multirun():
                # A multirun records the failure and goes on with the next job.
                print(f"error: {message}", file=sys.stderr)
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(1)

    wrapper.__name__ = getattr(fn, "__name__", "main")
    wrapper.__doc__ = fn.__doc__
    return wrapper
