"""Make Lightning's DDP launcher start the *current job* in its child processes during a multirun.

Lightning starts DDP children by re-running ``sys.argv`` with ``hydra.run.dir=<run.dir>``; in a
multirun that would re-run the whole sweep in every child (and write elsewhere). Before fitting,
the job's own overrides become the command line and its output dir the run dir.
"""

from __future__ import annotations

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

# Overrides that make a job a sweep again; children must run one plain job.
SWEEP_KEYS = ("hparams_search", "hydra.sweeper", "hydra/sweeper", "hydra/launcher", "hydra.launcher", "hydra.mode")


def pin_job_for_ddp_children() -> None:
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(SWEEP_KEYS)]
    sys.argv = [sys.argv[0], *overrides, "hydra.mode=RUN"]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
