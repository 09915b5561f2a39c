"""Errors a user can fix, shown as one line instead of a stack trace."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A wrong combination or value in the composed config."""


def user_errors() -> tuple[type[BaseException], ...]:
    from headstart.backbones.base import HubUnreachableError
    from headstart.data.errors import DataError

    return (ConfigError, DataError, HubUnreachableError, FileNotFoundError, OmegaConfBaseException)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``; a user error exits with ``error: <message>`` (HYDRA_FULL_ERROR=1 shows the trace)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_errors() as err:
            message = " ".join(str(err).split())
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or in_multirun():
                # A multirun records the failure and goes on with the next job.
                print(f"error: {message}", file=sys.stderr)
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(1)

    wrapper.__name__ = getattr(fn, "__name__", "main")
    wrapper.__doc__ = fn.__doc__
    return wrapper
