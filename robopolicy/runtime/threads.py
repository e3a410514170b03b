"""Placement of the control and inference threads: CPU affinity and real-time priority (Linux, best effort)."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def set_thread_cpu(cpu: int | None) -> None:
    """Pin the calling thread to one CPU (Linux: affinity is per thread). Optional, best effort."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, {int(cpu)})
    except OSError as e:
        log.warning("could not pin the thread to CPU %s: %s", cpu, e)


def set_realtime(priority: int | None) -> None:
    """SCHED_FIFO for the calling thread (needs CAP_SYS_NICE / rtprio limits). Optional, best effort."""
    if not priority or not hasattr(os, "sched_setscheduler"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except OSError as e:
        log.warning("could not switch to SCHED_FIFO priority %s: %s (run with CAP_SYS_NICE)", priority, e)
