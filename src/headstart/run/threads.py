"""headstart's default CPU thread count: the cores this process may run on.

torch sizes its intra-op pool from the machine's core count (or ``OMP_NUM_THREADS``), not from the
cores the process is allowed to use. Under ``taskset``, a cgroup cpuset or a shared batch node that
over-subscribes the allowed cores, and the spinning OpenMP threads then contend with each other
(runs 10-20x slower were noted on a loaded machine). headstart therefore sets the intra-op thread
count once, at the start of train / eval / predict, in this order of precedence:

1. ``threads`` in the config (an int > 0), when given;
2. ``OMP_NUM_THREADS`` in the environment, when set (the user chose; torch already follows it);
3. the number of cores in ``os.sched_getaffinity(0)`` (``os.cpu_count()`` where that is missing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch


def allowed_cores() -> int:
    """Cores this process may be scheduled on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def choose_threads(configured: int | None = None, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(intra-op thread count, where it came from: 'config' | 'OMP_NUM_THREADS' | 'affinity')."""
    environ = os.environ if environ is None else environ
    if configured is not None and int(configured) > 0:
        return int(configured), "config"
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    return allowed_cores(), "affinity"


def apply_thread_policy(cfg: Mapping[str, Any] | None = None) -> int:
    """Set torch's intra-op threads by the policy above; returns the count now in use.

    cfg: the run's config; its optional top-level ``threads`` key wins (null or 0: automatic).
    """
    configured = cfg.get("threads") if cfg is not None else None
    count, _ = choose_threads(configured)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
