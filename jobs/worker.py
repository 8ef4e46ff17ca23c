"""The worker loop.

A ``Worker`` repeatedly claims a batch of due jobs from its queues, runs them
one after another through ``runner.execute``, and goes back for more. When no
job is due it waits ``poll_interval`` seconds on a ``threading.Event``, so a
stop request wakes it at once. A heartbeat thread renews the lease of every job
the worker holds, so a live worker keeps its jobs however long they run, and a
dead one loses them when the lease runs out. Every ``recover_interval`` seconds
the worker also recovers jobs whose lease expired, whoever held them: there is
no single supervisor to lose.

Stopping: the first SIGINT/SIGTERM (or ``stop()``) lets the running job finish,
hands back claimed jobs that did not start, and returns. A second signal raises
``KeyboardInterrupt`` in the running task; the job goes back to the queue (its
attempt counted) and the worker exits.

Test hooks: ``burst`` returns once no job is due, ``max_jobs`` stops after that
many jobs, ``worker_id`` fixes the id, ``install_signal_handlers=False`` leaves
signals alone.
"""

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django.db import close_old_connections, connection

from jobs import lifecycle, runner, schedules
from jobs.conf import conf
from jobs.models import Job

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        worker_id: str | None = None,
        poll_interval: float | None = None,
        batch: int | None = None,
        max_jobs: int | None = None,
        burst: bool = False,
        install_signal_handlers: bool = True,
        recover_interval: float | None = None,
    ) -> None:
        self.queues = list(queues) if queues else None
        self.worker_id = worker_id or lifecycle.new_worker_id(
            f"{socket.gethostname()}-{os.getpid()}"
        )
        self.poll_interval = conf.POLL_INTERVAL if poll_interval is None else poll_interval
        self.batch = max(1, batch or conf.BATCH_SIZE)
        self.max_jobs = max_jobs
        self.burst = burst
        self.install_signal_handlers = install_signal_handlers
        self.recover_interval = (
            conf.LEASE_SECONDS / 2 if recover_interval is None else recover_interval
        )
        self.processed = 0
        self._stop = threading.Event()
        self._held: dict[Any, Job] = {}
        self._held_lock = threading.Lock()
        self._running: Job | None = None
        self._signals = 0
        self._next_recover = 0.0

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the running job, claim nothing new, and return from ``run``."""
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "worker=%s signal=%s stopping after the current job", self.worker_id, signum
            )
            self.stop()
        else:
            logger.warning("worker=%s signal=%s stopping now", self.worker_id, signum)
            raise KeyboardInterrupt

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Process jobs until stopped (or drained, in burst mode); return how many ran."""
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        logger.info("worker=%s queues=%s started", self.worker_id, self.queues or "all")
        heart = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heart.start()
        try:
            while not self._stop.is_set():
                if not self.run_once() and not self._stop.is_set():
                    if self.burst:
                        break
                    self._stop.wait(self.poll_interval)
        finally:
            self._stop.set()
            self._release_held()
            heart.join(timeout=5)
            logger.info("worker=%s processed=%s stopped", self.worker_id, self.processed)
        return self.processed

    def run_once(self) -> int:
        """Claim one batch and run it; return how many jobs ran."""
        close_old_connections()
        self._maybe_recover()
        self._tick_schedules()
        limit = self.batch
        if self.max_jobs is not None:
            limit = min(limit, self.max_jobs - self.processed)
        jobs = lifecycle.claim(worker_id=self.worker_id, queues=self.queues, limit=limit)
        with self._held_lock:
            self._held.update((job.pk, job) for job in jobs)
        ran = 0
        for job in jobs:
            if self._stop.is_set():
                break
            self._running = job
            runner.execute(job, worker_id=self.worker_id)
            with self._held_lock:
                self._held.pop(job.pk, None)
            self._running = None
            ran += 1
            self.processed += 1
        if self.max_jobs is not None and self.processed >= self.max_jobs:
            self.stop()
        self._release_held()
        return ran

    def _release_held(self) -> None:
        """Hand back claimed jobs; one interrupted mid-run keeps its attempt."""
        with self._held_lock:
            held, self._held = list(self._held.values()), {}
        running, self._running = self._running, None
        if not held:
            return
        close_old_connections()
        if running is not None and running in held:
            held.remove(running)
            lifecycle.release(jobs=[running], worker_id=self.worker_id, started=True)
        lifecycle.release(jobs=held, worker_id=self.worker_id, started=False)

    def _maybe_recover(self) -> None:
        now = time.monotonic()
        if now < self._next_recover:
            return
        self._next_recover = now + self.recover_interval
        recovered = lifecycle.recover()
        if recovered:
            logger.warning("worker=%s recovered=%s expired leases", self.worker_id, recovered)

    def _tick_schedules(self) -> None:
        """Fire due schedules (rate-limited inside); a failure is logged, never fatal."""
        try:
            schedules.tick()
        except Exception:
            logger.exception("worker=%s schedule tick failed", self.worker_id)
            close_old_connections()

    def _heartbeat_loop(self) -> None:
        interval = max(conf.LEASE_SECONDS / 3, 0.05)
        try:
            while not self._stop.wait(interval):
                with self._held_lock:
                    ids = list(self._held)
                if ids:
                    try:
                        lifecycle.heartbeat(worker_id=self.worker_id, job_ids=ids)
                    except Exception:
                        logger.exception("worker=%s heartbeat failed", self.worker_id)
                        close_old_connections()
        finally:
            connection.close()
