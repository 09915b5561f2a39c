"""The ``main()`` of the commands that start from a checkpoint (eval.py, predict.py, export.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from headstart.run.checkpoint import with_checkpoint_choices
from headstart.run.checks import CONF_DIR, exit_on_bad_choice
from headstart.run.config import register_resolvers
from headstart.run.errors import one_line_errors


def checkpoint_command(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """``main()`` composing ``conf/<config_name>.yaml`` with the checkpoint's task / model / data
    choices first (``ckpt_path=`` on the command line), then ``run(cfg)``; user errors are one line."""

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    @one_line_errors
    def _main(cfg: DictConfig) -> None:
        run(cfg)

    def main() -> None:
        register_resolvers()
        exit_on_bad_choice(sys.argv[1:])
        sys.argv = with_checkpoint_choices(sys.argv)
        _main()

    return main
