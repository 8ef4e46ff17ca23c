"""The worker loop.

A ``Worker`` is a supervisor: it claims jobs, hands them to its executor pool
(``jobs/worker/executor.py``: ``concurrency`` child processes that run the task code),
and records each outcome through the lifecycle. Its loop never runs user code,
so it always gets round to its housekeeping:

- it renews the lease of every job it holds (claimed or running) and its own
  registry row (``jobs.models.Worker``) every third of a lease. An attempt that
  the heartbeat finds no longer held (cancelled, recovered, moved by hand to
  done, failed or queued, deleted) is stopped: its child is killed if it runs
  the task, told to skip it if it has not started it;
- it records ``started_at`` of a job still running after a moment (a quicker
  job's start is recorded with its outcome), and hands the jobs waiting behind a
  job running longer than ``JOBS_HAND_BACK_AFTER`` back to the queue;
- it sizes each claim by how fast the last batches ran (``_resize``): up to
  ``batch`` jobs per executor while whole batches finish within
  ``JOBS_HAND_BACK_AFTER``, fewer as they slow down, one after a hand-back;
- it kills a child whose job overran its ``timeout`` and records a timed-out
  attempt (retried like any failure), then starts a fresh child;
- every ``recover_interval`` seconds it recovers jobs whose lease expired, from
  any dead worker: there is no single supervisor to lose; and it removes the
  registry rows of workers dead for longer than ``JOBS_RETAIN_DEAD_WORKERS``.

When idle it waits ``poll_interval`` seconds on a ``threading.Event``, so a stop
request wakes it at once. Stopping: the first SIGINT/SIGTERM (or ``stop()``)
stops claiming, hands back claimed jobs that have not started (in its buffer or
an executor's hand), and lets running jobs finish for up to ``shutdown_timeout``
seconds; jobs still running then are killed and put back in the queue (their
attempt counted). A second signal does that at once. Nothing is left
``processing``; after a crash, recovery takes over.

The database may come and go: at start the worker waits for it (retrying with
backoff, logging each retry); a database error in a pass, or while stopping (a
connection that died unnoticed, say across a pause), drops the connection and
retries on a new one (``db_retry.DatabaseRetry``). Stopping always ends with
exit status 0: what cannot be handed back is recovered once its lease expires.

Test hooks: ``burst`` returns once no job is due, ``max_jobs`` stops after that
many jobs, ``worker_id`` fixes the id, ``install_signal_handlers=False`` leaves
signals alone. Started inside a transaction (a ``TestCase``), a worker runs the
due jobs in its own process and returns (see ``jobs.testing``).

Connections: see ``jobs.worker.connections`` (kept open whatever ``CONN_MAX_AGE`` says).
"""

import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from jobs import lifecycle, retention, runner, schedules
from jobs.conf import conf
from jobs.exceptions import TransitionRefused, database_unavailable
from jobs.models import Job, Outcome
from jobs.models import Worker as WorkerRow
from jobs.notify import Listener
from jobs.worker.connections import keep_connections
from jobs.worker.db_retry import DatabaseRetry
from jobs.worker.executor import START_MARK_DELAY, Pool

logger = logging.getLogger(__name__)


def _key(job: Job) -> tuple[Any, int]:
    """A job's attempt: what a worker holds is (job, attempt number)."""
    return job.pk, job.attempts


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
        self.batch = max(1, batch or conf.BATCH_SIZE)  # the most per executor
        self._size = self.batch  # jobs per executor in the next claim (see _resize)
        self.hand_back_after = conf.HAND_BACK_AFTER
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
        self._returning: list[Job] = []  # handed back from an executor, to release
        self._more = False  # the last claim took all it asked for: more may be due
        self._stop = threading.Event()
        # A byte here wakes the loop from waiting on its executors (see stop()).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._signals = 0
        self._next_recover = 0.0
        self._next_heartbeat = 0.0
        self._db = DatabaseRetry(self.worker_id, self._stop)
        self._taken: set[tuple[Any, int]] = set()  # attempts the last heartbeat found taken
        self.listener = Listener()

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
        if connection.in_atomic_block:
            return self._run_in_transaction()
        keep_connections()
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            # A supervisor (manage.py serve) may start us with them blocked, so that a stop
            # sent while we booted waits for these handlers: it is delivered now.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        if not self._wait_for_database():
            self._close()
            return self.processed
        if keyed := lifecycle.key_limited_jobs():
            logger.info("worker=%s keyed=%s queued jobs of limited tasks", self.worker_id, keyed)
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
                    self._db.failed(exc)
                    continue
                self._db.succeeded()
                if idle and self.burst:
                    break
            self._drain()
            clean = True
        finally:
            self._shutdown(clean=clean)
        return self.processed

    def _run_in_transaction(self) -> int:
        """Run the due jobs in this process, inside the caller's transaction (a TestCase).

        Executor processes could not see the transaction's rows, and closing the
        connection between passes would end it; a test wants the jobs run, then the
        command to return.
        """
        logger.info("worker=%s in a transaction: running due jobs in-process", self.worker_id)
        os.close(self._wake_r)
        os.close(self._wake_w)
        ran = runner.run_due(worker_id=self.worker_id, queues=self.queues, limit=self.max_jobs)
        self.processed = len(ran)
        return self.processed

    def _wait_for_database(self) -> bool:
        """Register this worker, waiting for the database until it answers; return
        False if stopped first."""
        while not self._stop.is_set():
            try:
                self._register()
                self._db.succeeded()
                return True
            except DatabaseError as exc:
                self._db.failed(exc)
        return False

    def _step(self) -> bool:
        """One pass: housekeeping, claim, dispatch, collect. Return False when idle."""
        close_old_connections()
        self._housekeeping()
        claimed = self._fill()
        if not self.pool.busy():
            if claimed:
                return True
            if not self.burst:
                self._idle_wait(min(self.poll_interval, lifecycle.next_start_in() or float("inf")))
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
        """Claim jobs for idle slots and hand them over; return how many were claimed.

        A rate-limited job is claimed only for an idle executor (``starts``), and heads
        that executor's hand, so that it starts at once.

        While every executor is busy with quick jobs and the last claim came back
        full, claim the next batch ahead: the claim's round trip then overlaps the
        executors' work instead of following it.
        """
        idle = self.pool.idle()
        wanted = self._room()
        claimed = 0
        ahead = not idle and self._more and self._size > 1
        if (idle or ahead) and not self._buffer and wanted > 0:
            limit = min(self._size * len(idle or self.pool.busy()), wanted)
            jobs = lifecycle.claim(
                worker_id=self.worker_id, queues=self.queues, limit=limit, starts=len(idle)
            )
            self._more = len(jobs) == limit
            self._buffer.extend(jobs)
            claimed = len(jobs)
        if not idle:
            return claimed
        rated = [job for job in self._buffer if hasattr(job, "rate_slots")]
        rest = deque(job for job in self._buffer if not hasattr(job, "rate_slots"))
        share = max(1, -(-len(rest) // max(1, len(idle))))  # ceil: spread evenly
        for slot in idle:
            room = self.pool.capacity(slot) or share  # a child's max_jobs_per_child
            chunk = [rated.pop(0)] if rated else []
            chunk += [rest.popleft() for _ in range(min(share, len(rest), room - len(chunk)))]
            if chunk:
                self.pool.submit(slot, chunk)
        self._buffer = deque([*rated, *rest])
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
            if (job := self.pool.in_task(slot)) is not None:
                if job.started_at is None:
                    times.append(self.pool.since(slot) + START_MARK_DELAY - now)  # _mark_started
                if self.pool.unstarted(slot) or self._buffer:  # _hand_back_waiting
                    times.append(self.pool.since(slot) + self.hand_back_after - now)
        if self.pool.idle():
            times.append(self.poll_interval if idle else 0.0)
            if (rate_wait := lifecycle.next_start_in()) is not None:  # a rate slot frees
                times.append(rate_wait)
        return max(0.0, min(times))

    def _collect(self, timeout: float) -> None:
        finished, (ran, unstarted) = self.pool.wait(timeout, wake=self._wakers())
        self._consume_wakeups()
        if self.pool.lost:  # cleared once released: a database error keeps them for next time
            lifecycle.release(
                jobs=self.pool.lost,
                worker_id=self.worker_id,
                started=True,
                reason="ran, but its outcome could not be recorded",
            )
            self.pool.lost = []
        for job, status in finished:
            if status == "skipped":  # taken away, or stopping: never started
                unstarted.append(job)
                continue
            if status is None:
                self._fail(job, "executor process died", Outcome.FAILED)
            self._count()
        self._hand_back(ran, unstarted)
        for slot in self.pool.overdue(time.monotonic()):
            before, job, rest = self.pool.replace(slot)
            timeout = job.timeout or conf.TIMEOUT
            logger.warning("job=%s timeout=%s stopped", job.pk, timeout)
            self._fail(job, f"timed out after {timeout} seconds", Outcome.TIMED_OUT)
            self._count()
            self._hand_back(before, rest)
        self._stop_taken()
        self._mark_started()
        self._hand_back_waiting()
        self._resize()

    def _hand_back_waiting(self) -> None:
        """Release the jobs waiting in an executor's hand behind one that has run for
        ``hand_back_after`` seconds: another worker (or executor) takes them."""
        now = time.monotonic()
        for slot in self.pool.busy():
            long = now - self.pool.since(slot) >= self.hand_back_after
            if not long or self.pool.in_task(slot) is None:
                continue
            if self.pool.unstarted(slot):
                self._returning += self.pool.hand_back(slot)
                self._size = 1
            if self._buffer:  # claimed ahead for quick jobs
                self._returning += self._buffer
                self._buffer.clear()
                self._size = 1
        self._release_returning()

    def _release_returning(self) -> None:
        """Release the jobs taken back from executors (kept for the next pass if the
        database fails meanwhile)."""
        if self._returning:
            lifecycle.release(jobs=self._returning, worker_id=self.worker_id, started=False)
            self._returning = []

    def _resize(self) -> None:
        """Size the next claim from the batches executors finished: double it while a
        whole batch runs within ``hand_back_after`` (up to ``batch``), halve it when
        one takes longer; one at a time after a job was handed back."""
        for size, seconds in self.pool.batches:
            if seconds >= self.hand_back_after:
                self._size = max(1, self._size // 2)
            elif size >= self._size:
                self._size = min(self.batch, self._size * 2)
        self.pool.batches.clear()

    def _hand_back(self, ran: list[Job], unstarted: list[Job]) -> None:
        """Requeue jobs a stopped child left: ones that ran (their success unrecorded)
        run again; ones that never started get their attempt back. (Fenced: a job
        taken away meanwhile is left alone.)"""
        if ran:
            lifecycle.release(
                jobs=ran,
                worker_id=self.worker_id,
                started=True,
                reason="stopped by its worker before its outcome was recorded",
            )
        if unstarted:
            lifecycle.release(jobs=unstarted, worker_id=self.worker_id, started=False)

    def _fail(self, job: Job, error: str, outcome: str) -> None:
        """Record an attempt the executor could not report itself (timeout, crash)."""
        try:
            lifecycle.fail(job=job, worker_id=self.worker_id, error=error, outcome=outcome)
        except TransitionRefused as refused:
            logger.warning("job=%s outcome=discarded reason=%s", job.pk, refused)
            return
        runner.attempt_stopped(job)

    def _count(self) -> None:
        self.processed += 1
        if self.max_jobs is not None and self.processed >= self.max_jobs:
            self.stop()

    def _mark_started(self) -> None:
        """Record ``started_at`` of jobs running for ``START_MARK_DELAY`` (one write)."""
        now = time.monotonic()
        starts = []
        for slot in self.pool.busy():
            job = self.pool.in_task(slot)
            if job is not None and job.started_at is None:
                if now - self.pool.since(slot) >= START_MARK_DELAY:
                    starts.append((job, self.pool.started_at(slot)))
        if starts:
            lifecycle.mark_started(worker_id=self.worker_id, starts=starts)
            for job, started_at in starts:
                job.started_at = started_at

    # -- housekeeping ---------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._heartbeat()  # due again until it succeeds
            self._next_heartbeat = now + self.heartbeat_interval
        if now >= self._next_recover:
            self._next_recover = now + self.recover_interval
            if recovered := lifecycle.recover():
                logger.warning("worker=%s recovered=%s expired leases", self.worker_id, recovered)
            retention.purge_dead_workers()  # rows of workers killed without a clean exit
        try:
            schedules.tick()  # rate-limited inside; cheap when nothing is due
        except Exception as exc:
            if database_unavailable(exc):
                raise  # an outage, not a broken schedule: the loop waits it out
            logger.exception("worker=%s schedule tick failed", self.worker_id)
            close_old_connections()

    def _heartbeat(self) -> None:
        if not WorkerRow.objects.filter(pk=self.worker_id).update(last_heartbeat_at=timezone.now()):
            self._register()  # removed as dead while this process was paused: back in the registry
        held = lifecycle.heartbeat(
            worker_id=self.worker_id, jobs=[*self.pool.held(), *self._buffer]
        )
        self._buffer = deque(job for job in self._buffer if _key(job) in held)
        # Read after the heartbeat: a job whose task had not returned when its row said
        # it was no longer held was taken away. One whose task had returned was
        # recorded by its own executor (its report still in the pipe): nothing to stop.
        self._taken = {
            _key(job)
            for slot in self.pool.busy()
            for job in self.pool.pending(slot)
            if _key(job) not in held
        }
        self._stop_taken()

    def _stop_taken(self) -> None:
        """Stop the attempts the heartbeat found taken away: kill the child running
        one (the task gets ``task_finished``), tell a child not to start one."""
        if not self._taken:
            return
        for slot in self.pool.busy():
            job = self.pool.in_task(slot)
            if job is None or _key(job) not in self._taken:
                taken = [j for j in self.pool.unstarted(slot) if _key(j) in self._taken]
                self.pool.skip(slot, taken)
                continue
            logger.warning(
                "job=%s no longer held (cancelled, recovered or moved by hand): stopped", job.pk
            )
            ran, running, unstarted = self.pool.replace(slot)
            if running is not None and running is not job:  # it had moved on meanwhile
                ran.append(running)
            self._hand_back(ran, unstarted)
            runner.attempt_stopped(job)

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
        self._release_returning()
        if self._buffer:
            lifecycle.release(jobs=list(self._buffer), worker_id=self.worker_id, started=False)
            self._buffer.clear()

    def _drain(self) -> None:
        """Hand back claimed jobs not started; let running jobs finish and their
        outcomes be recorded, up to ``shutdown_timeout`` seconds. A database error (a
        connection that died unnoticed) is retried on a new connection within the
        same time."""
        deadline = time.monotonic() + self.shutdown_timeout
        for slot in self.pool.busy():
            self.pool.skip(slot, self.pool.unstarted(slot))
        while time.monotonic() < deadline:
            try:
                close_old_connections()
                self._release_buffer()
                if not self.pool.held():  # nothing running, no outcome left to record
                    return
                self._housekeeping()
                idle = not self.pool.busy()  # only outcomes to wait for: their report wakes it
                self._collect(min(self._wait_time(idle=idle), deadline - time.monotonic()))
                self._db.succeeded()
            except DatabaseError as exc:
                self._db.failed(exc, until=deadline)

    def _shutdown(self, *, clean: bool) -> None:
        ran, running, unstarted = self.pool.close()
        lost, self.pool.lost = self.pool.lost, []
        unfinished = [*lost, *ran, *running]
        if unfinished:
            logger.warning("worker=%s requeued=%s unfinished jobs", self.worker_id, len(unfinished))
        for attempt in (1, 2):  # after a database error, once more on a new connection
            try:
                close_old_connections()
                self._release_buffer()
                self._hand_back(unfinished, unstarted)
                WorkerRow.objects.filter(pk=self.worker_id).delete()
            except Exception as exc:
                if attempt == 1 and isinstance(exc, DatabaseError):
                    logger.warning(
                        "worker=%s database error, reconnecting: %s", self.worker_id, exc
                    )
                    continue
                # Leases run out and recovery requeues the jobs; the row is marked dead.
                logger.exception("worker=%s could not hand back its jobs", self.worker_id)
                break
            for job in running:
                runner.attempt_stopped(job)
            break
        self._close()
        logger.info(
            "worker=%s processed=%s stopped clean=%s", self.worker_id, self.processed, clean
        )

    def _close(self) -> None:
        self.listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
