"""headstart's default CPU thread count: the cores this process may use, less those other work holds.

torch sizes its intra-op pool once, from the cores it may use when it starts (OpenMP reads the
affinity mask) or ``OMP_NUM_THREADS``. On a machine that other processes already keep busy,
that pool over-subscribes the cores: OpenMP threads spin at barriers waiting for siblings that
are not scheduled. Measured here (2 cores, load average 11, MiniLM forward + backward, batch
32 x 30 tokens): 2 threads took 27 s a step, 1 thread 11 s (2.5x); earlier notes saw 10-20x on
small models. headstart therefore sets the intra-op thread count at the start of train / eval /
predict, in this order of precedence:

1. ``threads`` in the config (an int > 0; e.g. ``+threads=2`` on the command line);
2. ``OMP_NUM_THREADS`` in the environment, when set (the user chose; torch already follows it);
3. the cores in ``os.sched_getaffinity(0)``, reduced to the cores left free by other work
   (``os.cpu_count() - busy``, rounded, at least 1) when other processes keep the machine busy
   right now.

"Busy" is what other processes use now: /proc/stat sampled over 0.2 s, less this process's own
CPU time over the same window (the 1-minute load average where /proc is missing). The load
average is not used on Linux because it lags by a minute: right after a pip install or the
previous run it reads 1.5-2 on an idle 2-core machine, and the whole next run (or a whole test
session, which decides once) went single-threaded.

The choice is made once per process (a multirun's later jobs would otherwise count the load of
the earlier ones) and printed when other work made it smaller than the allowed cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import torch

_CHOSEN: tuple[int, str] | None = None  # the automatic choice of this process, once made


def allowed_cores() -> int:
    """Cores this process may be scheduled on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _cpu_ticks() -> tuple[int, int, int]:
    """(busy ticks of the whole machine, all ticks, this process's ticks) from /proc."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields), int(own[11]) + int(own[12])  # utime + stime


def busy_cores(interval: float = 0.2) -> float:
    """Cores other processes keep busy now: a /proc/stat sample over ``interval`` seconds less this
    process's own use; the 1-minute load average where /proc is missing (macOS)."""
    try:
        busy0, total0, own0 = _cpu_ticks()
        time.sleep(interval)
        busy1, total1, own1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if total1 <= total0:
        return 0.0
    machine = os.cpu_count() or 1
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / (total1 - total0) * machine)


def free_cores(load: float, machine_cores: int) -> int:
    """Cores not kept busy by other work: machine cores minus the load average, rounded, >= 1."""
    return max(1, round(machine_cores - load))


def choose_threads(
    configured: int | None = None,
    environ: Mapping[str, str] | None = None,
    load: float | None = None,
    machine_cores: int | None = None,
) -> tuple[int, str]:
    """(intra-op thread count, why: 'config' | 'OMP_NUM_THREADS' | 'affinity' | 'affinity+load').

    load / machine_cores: cores other work keeps busy (``busy_cores()``) and ``os.cpu_count()``
    (measured / read when None).
    """
    environ = os.environ if environ is None else environ
    if configured is not None and int(configured) > 0:
        return int(configured), "config"
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    cores = allowed_cores()
    if load is None:
        load = busy_cores()
    free = free_cores(load, machine_cores or os.cpu_count() or cores)
    return (free, "affinity+load") if free < cores else (cores, "affinity")


def pin_threads(count: int | None = None) -> int:
    """Make ``count`` (default: the allowed cores) this process's automatic choice from now on,
    without measuring: for a process that owns its machine (the test suite), where one busy moment
    at the first run must not decide the thread count of every later one."""
    global _CHOSEN
    _CHOSEN = (int(count or allowed_cores()), "pinned")
    torch.set_num_threads(_CHOSEN[0])
    return _CHOSEN[0]


def apply_thread_policy(cfg: Mapping[str, Any] | None = None, resumed: int | None = None) -> int:
    """Set torch's intra-op threads by the policy above; returns the count now in use.

    cfg: the run's config; its optional top-level ``threads`` key wins (null or 0: automatic).
    resumed: the thread count of the run a resumed run continues (its checkpoint records it): it
    comes before the automatic choice, since a float reduction split over another number of
    threads sums in another order and the resumed run would not continue the killed one exactly.
    """
    global _CHOSEN
    configured = cfg.get("threads") if cfg is not None else None
    if resumed and not configured and not os.environ.get("OMP_NUM_THREADS"):
        if torch.get_num_threads() != int(resumed):
            torch.set_num_threads(int(resumed))
        return int(resumed)
    if configured or os.environ.get("OMP_NUM_THREADS") or _CHOSEN is None:
        automatic = not configured and not os.environ.get("OMP_NUM_THREADS")
        busy = busy_cores() if automatic else None
        count, why = choose_threads(configured, load=busy)
        if automatic:
            _CHOSEN = (count, why)
            if why == "affinity+load":
                print(f"threads: {count} (of {allowed_cores()} allowed cores; other processes keep {busy:.1f} "
                      f"of {os.cpu_count()} cores busy; +threads=N or OMP_NUM_THREADS sets it)")
    else:
        count, why = _CHOSEN
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
