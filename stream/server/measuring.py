"""Where the decision layer's measurements run: a pool of worker processes sized to the cores.

An `EvidenceJob` (a segment's quality check and acoustic cues: Welch spectra, Praat pitch
tracking) is pure CPU work on numpy arrays. In the server process it would share the GIL with
the event loop and the model's launching thread, and one measuring thread caps the whole
server at one core's worth of pitch tracking. Worker processes take it off that core: each
measures whole segments independently (the same code, so the same Evidence), and the cost of
one segment is bounded by `DecisionConfig.cues_max_seconds` of pitch tracking.

`processes=0` keeps today's single measuring thread inside the server (tests, tiny machines).

A worker never outlives the server: a `kill -9` or a crash leaves it blocked on the pool's queue
(which it holds open itself) with hundreds of MB. On Linux the kernel kills it when the server
dies (PR_SET_PDEATHSIG); elsewhere a watchdog thread notices the new parent and exits.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from stream.decision.config import DecisionConfig
from stream.engine.jobs import EvidenceJob

log = logging.getLogger(__name__)

WARM_UP_SECONDS = 1.0  # a tone this long makes each worker import what the measurements need
WATCHDOG_SECONDS = 1.0  # how often a worker checks that its server is still there
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> None:
    """End this worker as soon as the process `parent` is gone."""
    if sys.platform.startswith("linux"):
        try:  # SIGKILL: a worker holds nothing to clean up, and nothing it runs can ignore it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog below still ends it

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    # Also covers a parent that died before prctl took effect: getppid() has changed already.
    threading.Thread(target=watch, name="emostream-watchdog", daemon=True).start()


def _start_worker(parent: int) -> None:
    """Worker start-up: die with the server `parent`; one BLAS/OpenMP thread each (the pool spreads over the cores)."""
    _die_with(parent)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = "1"
    threadpool_limits(1)


def _warm_up() -> int:
    """Measure a short tone with cues, so the first real segment does not pay for the imports."""
    rate = 16000
    t = np.arange(int(WARM_UP_SECONDS * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    EvidenceJob(0, tone, rate, DecisionConfig(), (0, len(tone))).run()
    return os.getpid()


def _run(job: EvidenceJob):
    """Run one job in a worker (module-level, so the pool can pickle it)."""
    return job.run()


class Measurer:
    """Runs `EvidenceJob`s off the event loop: in `processes` worker processes, or one thread (0)."""

    def __init__(self, processes: int):
        """Start the workers (they warm up in the background; jobs queue meanwhile)."""
        if processes < 0:
            raise ValueError(f"processes must be at least 0, got {processes}")
        self.processes = processes
        self._pool = self._new_pool()

    def _new_pool(self) -> Executor:
        if self.processes == 0:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="emostream-measure")
        # spawn, not fork: the server process holds torch's thread pools, which fork would copy broken.
        pool = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        # These submits start every worker, on this thread: the kernel's parent-death signal follows
        # the thread that started a worker, and this one (the server's event loop) lives as long as the server.
        for _ in range(self.processes):
            pool.submit(_warm_up)
        return pool

    def submit(self, job: EvidenceJob) -> Future:
        """Queue `job`; the future resolves to its Evidence (a dead worker's pool is replaced once)."""
        try:
            return self._pool.submit(_run, job)
        except BrokenExecutor:
            log.error("a measuring process died; starting a new pool")
            self._pool = self._new_pool()
            return self._pool.submit(_run, job)

    def shutdown(self) -> None:
        """Stop the workers now; queued jobs are cancelled, a measurement in progress is abandoned."""
        # A worker still warming up (imports) or measuring a long segment would hold
        # the server's exit for many seconds: the pool joins its workers when the process exits.
        workers = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
