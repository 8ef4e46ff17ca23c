"""The worker loop.

A ``Worker`` is a supervisor: it claims jobs, hands them to its executor pool
(``jobs/worker/executor.py``: ``concurrency`` child processes that run the task code),
and records each outcome through the lifecycle. Its loop never runs user code,
so it always gets round to its housekeeping:

- it renews the lease of every job it holds (claimed or running) and its own
  registry row (``jobs.models.Worker``) every third of a lease. A job that the
  heartbeat finds no longer held (cancelled, recovered) is stopped at once by
  killing its child;
- it kills a child whose job overran its ``timeout`` and records a timed-out
  attempt (retried like any failure), then starts a fresh child;
- every ``recover_interval`` seconds it recovers jobs whose lease expired, from
  any dead worker: there is no single supervisor to lose.

When idle it waits ``poll_interval`` seconds on a ``threading.Event``, so a stop
request wakes it at once. Stopping: the first SIGINT/SIGTERM (or ``stop()``)
stops claiming, hands back claimed jobs that have not started, and lets running
jobs finish for up to ``shutdown_timeout`` seconds; jobs still running then are
killed and put back in the queue (their attempt counted). A second signal does
that at once. Nothing is left ``processing``; after a crash, recovery takes over.

Test hooks: ``burst`` returns once no job is due, ``max_jobs`` stops after that
many jobs, ``worker_id`` fixes the id, ``install_signal_handlers=False`` leaves
signals alone.
"""

import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from types import FrameType
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobs import lifecycle, schedules
from jobs.conf import conf
from jobs.exceptions import TransitionRefused
from jobs.models import Job, Outcome, Status
from jobs.models import Worker as WorkerRow
from jobs.notify import Listener
from jobs.worker.connections import skip_health_checks
from jobs.worker.executor import Pool

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        worker_id: str | None = None,
        poll_interval: float | None = None,
        batch: int | None = None,
        concurrency: int = 1,
        max_jobs: int | None = None,
        max_jobs_per_child: int | None = None,
        shutdown_timeout: float | None = None,
        burst: bool = False,
        install_signal_handlers: bool = True,
        recover_interval: float | None = None,
    ) -> None:
        self.queues = list(queues) if queues else None
        host = socket.gethostname()
        self.worker_id = worker_id or lifecycle.new_worker_id(f"{host}-{os.getpid()}")
        self.poll_interval = conf.POLL_INTERVAL if poll_interval is None else poll_interval
        self.batch = max(1, batch or conf.BATCH_SIZE)
        self.concurrency = max(1, concurrency)
        self.max_jobs = max_jobs
        self.shutdown_timeout = (
            conf.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        self.burst = burst
        self.install_signal_handlers = install_signal_handlers
        self.recover_interval = (
            conf.LEASE_SECONDS / 2 if recover_interval is None else recover_interval
        )
        self.heartbeat_interval = max(conf.LEASE_SECONDS / 3, 0.05)
        self.pool = Pool(
            self.concurrency,
            worker_id=self.worker_id,
            timeout_for=lambda job: job.timeout or conf.TIMEOUT,
            max_jobs_per_child=max_jobs_per_child,
        )
        self.processed = 0
        self._buffer: deque[Job] = deque()
        self._stop = threading.Event()
        # A byte here wakes the loop from waiting on its executors (see stop()).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._signals = 0
        self._next_recover = 0.0
        self._next_heartbeat = 0.0
        self.listener = Listener()
        skip_health_checks()

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``shutdown_timeout``), return."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full: the loop is awake already

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("worker=%s signal=%s stopping", self.worker_id, signum)
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
        self._register()
        self.pool.start()
        logger.info(
            "worker=%s queues=%s concurrency=%s started",
            self.worker_id,
            ",".join(self.queues or ["*"]),
            self.concurrency,
        )
        clean = False
        try:
            while not self._stop.is_set():
                try:
                    idle = not self._step()
                except DatabaseError as exc:
                    # A restarted or unreachable database: reconnect on the next pass.
                    logger.warning("worker=%s database error, retrying: %s", self.worker_id, exc)
                    close_old_connections()
                    self._stop.wait(min(self.poll_interval * 4, 1.0))
                    continue
                if idle and self.burst:
                    break
            self._release_buffer()
            self._drain()
            clean = True
        finally:
            self._shutdown(clean=clean)
        return self.processed

    def _step(self) -> bool:
        """One pass: housekeeping, claim, dispatch, collect. Return False when idle."""
        close_old_connections()
        self._housekeeping()
        claimed = self._fill()
        if not self.pool.busy():
            if claimed:
                return True
            if not self.burst:
                self._idle_wait(self.poll_interval)
            return False
        self._collect(self._wait_time(idle=not claimed))
        return True

    def _wakers(self) -> list[int]:
        """File descriptors that end a wait: stop requests, and new-job notifications."""
        listen = self.listener.fileno()
        return [self._wake_r] if listen is None else [self._wake_r, listen]

    def _idle_wait(self, timeout: float) -> None:
        select.select(self._wakers(), [], [], timeout)
        self._consume_wakeups()

    def _consume_wakeups(self) -> None:
        try:
            os.read(self._wake_r, 64)  # a stop request: the loop checks _stop itself
        except BlockingIOError:
            pass
        self.listener.drain()

    def _fill(self) -> int:
        """Claim jobs for idle slots and hand them over; return how many were claimed."""
        idle = self.pool.idle()
        wanted = self._room()
        claimed = 0
        if idle and not self._buffer and wanted > 0:
            jobs = lifecycle.claim(
                worker_id=self.worker_id,
                queues=self.queues,
                limit=min(self.batch * len(idle), wanted),
            )
            self._buffer.extend(jobs)
            claimed = len(jobs)
        share = max(1, -(-len(self._buffer) // max(1, len(idle))))  # ceil: spread evenly
        for slot in idle:
            chunk = [self._buffer.popleft() for _ in range(min(share, len(self._buffer)))]
            if chunk:
                self.pool.submit(slot, chunk)
        return claimed

    def _room(self) -> int:
        inflight = len(self._buffer) + sum(len(slot.jobs) for slot in self.pool.busy())
        if self.max_jobs is None:
            return self.concurrency * self.batch
        return self.max_jobs - self.processed - inflight

    def _wait_time(self, *, idle: bool) -> float:
        now = time.monotonic()
        times = [self._next_heartbeat - now]
        for slot in self.pool.busy():
            deadline = self.pool.deadline(slot)
            # Not started yet as far as the worker can see: look again shortly.
            times.append(deadline - now if deadline is not None else 0.05)
        if self.pool.idle():
            times.append(self.poll_interval if idle else 0.0)
        return max(0.0, min(times))

    def _collect(self, timeout: float) -> None:
        finished, handed_back = self.pool.wait(timeout, wake=self._wakers())
        self._consume_wakeups()
        if self.pool.lost:
            lost, self.pool.lost = self.pool.lost, []
            lifecycle.release(jobs=lost, worker_id=self.worker_id, started=True)
        for job, status in finished:
            if status is None:
                self._fail(job, "executor process died", Outcome.FAILED)
            self._count()
        self._hand_back(*handed_back)
        for slot in self.pool.overdue(time.monotonic()):
            ran, job, unstarted = self.pool.replace(slot)
            timeout = job.timeout or conf.TIMEOUT
            logger.warning("job=%s timeout=%s stopped", job.pk, timeout)
            self._fail(job, f"timed out after {timeout} seconds", Outcome.TIMED_OUT)
            self._count()
            self._hand_back(ran, unstarted)

    def _hand_back(self, ran: list[Job], unstarted: list[Job]) -> None:
        """Requeue jobs a stopped child left: ones that ran (their success unrecorded)
        run again; ones that never started get their attempt back."""
        if ran:
            lifecycle.release(jobs=ran, worker_id=self.worker_id, started=True)
        if unstarted:
            lifecycle.release(jobs=unstarted, worker_id=self.worker_id, started=False)

    def _fail(self, job: Job, error: str, outcome: str) -> None:
        """Record an attempt the executor could not report itself (timeout, crash)."""
        try:
            lifecycle.fail(job=job, worker_id=self.worker_id, error=error, outcome=outcome)
        except TransitionRefused as refused:
            logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)

    def _count(self) -> None:
        self.processed += 1
        if self.max_jobs is not None and self.processed >= self.max_jobs:
            self.stop()

    # -- housekeeping ---------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval
            self._heartbeat()
        if now >= self._next_recover:
            self._next_recover = now + self.recover_interval
            if recovered := lifecycle.recover():
                logger.warning("worker=%s recovered=%s expired leases", self.worker_id, recovered)
        try:
            schedules.tick()  # rate-limited inside; cheap when nothing is due
        except Exception:
            logger.exception("worker=%s schedule tick failed", self.worker_id)
            close_old_connections()

    def _heartbeat(self) -> None:
        WorkerRow.objects.filter(pk=self.worker_id).update(last_heartbeat_at=timezone.now())
        ids = [job.pk for job in (*self.pool.held(), *self._buffer)]
        held = lifecycle.heartbeat(worker_id=self.worker_id, job_ids=ids)
        self._buffer = deque(job for job in self._buffer if job.pk in held)
        lost = {}
        for slot in self.pool.busy():
            running = self.pool.running(slot)
            if running is not None and running[1].pk not in held:
                lost[running[1].pk] = slot
        for job_id in self._taken_away(lost):
            logger.warning("job=%s no longer held (cancelled or recovered): stopped", job_id)
            ran, _, unstarted = self.pool.replace(lost[job_id])
            self._hand_back(ran, unstarted)

    def _taken_away(self, job_ids: Collection[Any]) -> list[Any]:
        """Of running jobs the heartbeat no longer holds, the ones someone else took:
        deleted, cancelled, or processing for another holder. A job this worker's
        executor has just finished (its report still in the pipe) is not one of them."""
        if not job_ids:
            return []
        found = {
            pk: (status, holder)
            for pk, status, holder in Job.objects.filter(pk__in=list(job_ids)).values_list(
                "pk", "status", "worker_id"
            )
        }
        return [
            job_id
            for job_id in job_ids
            if job_id not in found
            or found[job_id][0] == Status.CANCELLED
            or (found[job_id][0] == Status.PROCESSING and found[job_id][1] != self.worker_id)
        ]

    def _register(self) -> None:
        now = timezone.now()
        WorkerRow.objects.update_or_create(
            pk=self.worker_id,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queues or [],
                "concurrency": self.concurrency,
                "started_at": now,
                "last_heartbeat_at": now,
            },
        )

    # -- stopping -------------------------------------------------------------------------

    def _release_buffer(self) -> None:
        jobs, self._buffer = list(self._buffer), deque()
        if jobs:
            lifecycle.release(jobs=jobs, worker_id=self.worker_id, started=False)

    def _drain(self) -> None:
        """Let running jobs finish, up to ``shutdown_timeout`` seconds."""
        deadline = time.monotonic() + self.shutdown_timeout
        while self.pool.busy() and time.monotonic() < deadline:
            close_old_connections()
            self._housekeeping()
            self._collect(min(self._wait_time(idle=False), deadline - time.monotonic()))

    def _shutdown(self, *, clean: bool) -> None:
        ran, unfinished = self.pool.close()
        close_old_connections()
        try:
            self._release_buffer()
            if ran or unfinished:
                logger.warning(
                    "worker=%s requeued=%s unfinished jobs", self.worker_id, len(ran + unfinished)
                )
                lifecycle.release(jobs=ran + unfinished, worker_id=self.worker_id, started=True)
            WorkerRow.objects.filter(pk=self.worker_id).delete()
        except Exception:
            # Leases run out and recovery requeues the jobs; the row is marked dead.
            logger.exception("worker=%s could not hand back its jobs", self.worker_id)
        self.listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        logger.info(
            "worker=%s processed=%s stopped clean=%s", self.worker_id, self.processed, clean
        )
