"""Make Lightning's DDP launcher start the *current job* in its child processes during a multirun.

Lightning starts DDP children by re-running ``sys.argv`` with ``hydra.run.dir=<run.dir>``; in a
multirun that would re-run the whole sweep in every child (and write elsewhere). Before fitting,
the job's own overrides become the command line and its output dir the run dir. After the job,
``ReapDDPChildren`` (a Hydra callback) takes the job's children back from Lightning's watcher.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from omegaconf import DictConfig, read_write

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


class ReapDDPChildren(Callback):
    """After each job of a multirun, end Lightning's watch over that job's DDP child processes.

    Lightning's launcher watches a job's children from a thread that SIGKILLs the *main process*
    when a child exits with an error. In a multirun the main process is the whole sweep: a job that
    failed on every rank killed the jobs after it (and orphaned their children, which then waited
    for rank 0 forever). The job is over when this runs, so its children are waited for (killed
    after ``wait_s``) and its watcher stops.
    """

    def __init__(self, wait_s: float = 60.0) -> None:
        self.wait_s = wait_s

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
        if hydra_cfg is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
            return
        for watcher in [t for t in threading.enumerate() if isinstance(t, _ChildProcessObserver)]:
            # An empty list reads as "all children ended well": the watcher stops at its next look.
            children, watcher._child_processes = list(watcher._child_processes), []
            for child in children:
                try:
                    child.wait(timeout=self.wait_s)
                except subprocess.TimeoutExpired:
                    print(f"[sweep] job {hydra_cfg.job.num}: DDP process {child.pid} still running after the job ended: killed")
                    child.kill()
                    child.wait()
