"""The executor pool: child processes that run tasks for a worker.

A worker never runs task code itself. Each of its ``size`` slots owns one child
process, forked from a forkserver that has Django loaded, and hands it jobs over
a pipe, a few at a time (``--batch``). The child runs them in order with
``runner.execute`` (which records each outcome through the lifecycle, fenced on
the worker's id and the attempt; successes are recorded in groups, see
``runner.Completions``) and reports each job as it finishes, so the worker
always knows which job a child is running, since when, and whether its task
code has returned yet (shared memory, see ``Progress``).

A job's ``started_at`` is when its child starts it, not when it was claimed:
the child records it with the outcome (no extra write for a quick job), and the
worker writes it for a job still running after ``START_MARK_DELAY``. A job that
is taken away while it waits in a child's hand (cancelled, recovered, stopping)
is skipped: the worker sends the child a ``("skip", ids)`` notice, which the
child reads before starting each job.

Jobs never wait long behind a slow one: once a job has run for
``JOBS_HAND_BACK_AFTER`` seconds, the worker takes back the jobs waiting behind
it (``hand_back``) and releases them to the queue for any worker. It lowers the
child's ``Progress.LIMIT`` under the slot's lock, the lock the child takes to
start a job, so each of them was either started before or never will be.

Because the task runs in a process of its own, the worker can enforce a timeout
on code that never returns (``while True: pass``, a blocking C call) or stop a
cancelled job: it kills the child and starts a fresh one. ``max_jobs_per_child``
recycles children to contain leaks. Children ignore SIGINT/SIGTERM: the worker
decides when they stop. The child's side is ``jobs.worker.child``.
"""

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from django.db import connections

from jobs.worker.child import Progress, child_main

logger = logging.getLogger(__name__)

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["jobs.worker.boot"])

# A running job's started_at is written by the worker once it has run this long
# (seconds); a quicker job's is written with its outcome, at no extra cost.
START_MARK_DELAY = 0.05


@dataclass
class Slot:
    """One child process and its jobs: handed over (the first is running), and ran
    but with the success not yet recorded (still held, so still heartbeated)."""

    index: int
    process: Any
    conn: Connection
    progress: Any  # shared doubles, indexed by Progress
    lock: Any  # guards Progress.STARTED and Progress.LIMIT
    jobs: deque = field(default_factory=deque)
    unrecorded: dict = field(default_factory=dict)
    head: int = 0  # sequence number of jobs[0]
    skipped: set = field(default_factory=set)  # ids the child was told to skip
    handed_back: set = field(default_factory=set)  # ids released while in the child's hand
    submitted: float = 0.0  # when (monotonic) the slot got its jobs
    size: int = 0  # how many it got
    given: int = 0  # jobs handed to this child over its life (see max_jobs_per_child)


class Pool:
    def __init__(
        self,
        size: int,
        *,
        worker_id: str,
        timeout_for: Callable[[Any], float | None],
        max_jobs_per_child: int | None = None,
    ) -> None:
        self.size = size
        self.worker_id = worker_id
        self.timeout_for = timeout_for
        self.max_jobs_per_child = max_jobs_per_child
        self.db_names = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
        self.slots: list[Slot] = []
        # Jobs that ran but whose outcome a child failed to record: the worker hands
        # them back (they run again).
        self.lost: list[Any] = []
        # (jobs handed over, seconds until the child was through them) of each batch
        # a child finished since the worker last looked; it sizes the next batches.
        self.batches: list[tuple[int, float]] = []

    def start(self) -> None:
        self.slots = [self._spawn(index) for index in range(self.size)]

    def _spawn(self, index: int) -> Slot:
        parent, child = _context.Pipe()
        progress = _context.RawArray("d", Progress.INITIAL)
        lock = _context.Lock()
        process = _context.Process(
            target=child_main,
            args=(child, progress, lock, self.worker_id, self.db_names, self.max_jobs_per_child),
            name=f"jobs-executor-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        return Slot(index=index, process=process, conn=parent, progress=progress, lock=lock)

    def idle(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.jobs]

    def busy(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.jobs]

    def held(self) -> list[Any]:
        """Every job handed to a child whose outcome is not recorded yet."""
        return [
            job
            for s in self.slots
            for job in (*s.jobs, *s.unrecorded.values())
            if job.pk not in s.handed_back
        ]

    def capacity(self, slot: Slot) -> int | None:
        """The most jobs to hand the idle ``slot`` now (None: no limit): a child runs
        whole batches, so one never crosses ``max_jobs_per_child``. A child that has
        had its share is replaced by ``submit``, and the fresh one takes a full share."""
        limit = self.max_jobs_per_child
        if limit is None:
            return None
        return limit - slot.given if slot.given < limit else limit

    def submit(self, slot: Slot, jobs: list[Any]) -> None:
        """Hand ``jobs`` to the idle ``slot`` (replacing its child if it has retired)."""
        limit = self.max_jobs_per_child
        if not slot.process.is_alive() or (limit is not None and slot.given >= limit):
            # Retired after max_jobs_per_child (or about to: it ran all it was given
            # and exits after recording its successes, so let it).
            self._stop(slot, kill=not slot.process.is_alive())
            slot = self.slots[slot.index] = self._spawn(slot.index)
        slot.given += len(jobs)
        slot.jobs.extend(jobs)
        slot.skipped.clear()
        slot.handed_back.clear()
        slot.submitted, slot.size = time.monotonic(), len(jobs)
        # The child has reported every earlier job: none of them can start any more.
        slot.progress[Progress.LIMIT] = Progress.NO_LIMIT
        slot.conn.send(jobs)

    def _position(self, slot: Slot) -> int:
        """Position in ``slot.jobs`` of the job the child started last (may be out of range)."""
        return int(slot.progress[Progress.STARTED]) - slot.head

    def running(self, slot: Slot) -> tuple[int, Any, float] | None:
        """``(position in slot.jobs, job, start)`` of the job the child runs now, if any."""
        position = self._position(slot)
        if 0 <= position < len(slot.jobs):
            return position, slot.jobs[position], slot.progress[Progress.SINCE]
        return None

    def in_task(self, slot: Slot) -> Any | None:
        """The job whose task code the child runs now (started, not returned), if any."""
        running = self.running(slot)
        if running is None or slot.progress[Progress.RETURNED] >= slot.progress[Progress.STARTED]:
            return None
        return running[1]

    def pending(self, slot: Slot) -> list[Any]:
        """Jobs of the slot whose task code has not returned: running it, or not started."""
        job = self.in_task(slot)
        return [job, *self.unstarted(slot)] if job is not None else self.unstarted(slot)

    @staticmethod
    def since(slot: Slot) -> float:
        """When (monotonic) the slot's child started its current (or last) job."""
        return slot.progress[Progress.SINCE]

    def unstarted(self, slot: Slot) -> list[Any]:
        """Jobs handed to the slot's child that it has not started (nor handed back)."""
        rest = list(slot.jobs)[max(self._position(slot) + 1, 0) :]
        return [job for job in rest if job.pk not in slot.handed_back]

    def hand_back(self, slot: Slot) -> list[Any]:
        """Take back the jobs waiting behind the one the slot's child runs now: after
        this the child can start none of them (it reports them ``skipped``, and the
        worker ignores those reports). Return them, for the caller to release."""
        with slot.lock:
            slot.progress[Progress.LIMIT] = slot.progress[Progress.STARTED]
            waiting = self.unstarted(slot)
        slot.handed_back.update(job.pk for job in waiting)
        return waiting

    @staticmethod
    def started_at(slot: Slot) -> datetime:
        """When the slot's child started its current (or last) job."""
        return datetime.fromtimestamp(slot.progress[Progress.SINCE_WALL], UTC)

    def skip(self, slot: Slot, jobs: list[Any]) -> None:
        """Tell the slot's child not to start ``jobs``; it reports them as ``skipped``.

        A child already running one of them runs it: stopping it is ``replace``.
        """
        ids = [job.pk for job in jobs if job.pk not in slot.skipped]
        if ids:
            slot.skipped.update(ids)
            try:
                slot.conn.send(("skip", ids))
            except OSError:
                return  # the child died: wait() finds out and hands its jobs back
            slot.progress[Progress.NOTICES] += 1  # after the send: the child then finds it

    def deadline(self, slot: Slot) -> float | None:
        """When the running job overruns its timeout (None: nothing running, or no limit)."""
        if (running := self.running(slot)) is None:
            return None
        timeout = self.timeout_for(running[1])
        return running[2] + timeout if timeout else None

    def wait(self, timeout: float, *, wake: list[Any]) -> tuple[list[tuple[Any, Any]], Any]:
        """Wait up to ``timeout`` for reports; return ``(finished, handed_back)``.

        ``finished`` holds ``(job, status)`` pairs as jobs finish running (status
        ``"skipped"``: the child did not start it, as told); status ``None`` means
        the child died running that job (the slot is replaced). ``handed_back`` is
        what a dead child left, as ``replace`` returns it. Anything in ``wake``
        that becomes readable ends the wait early.
        """
        live = [s for s in self.slots if s.jobs or s.unrecorded]
        waitables: list[Any] = [s.conn for s in live] + [s.process.sentinel for s in live]
        ready = set(wait([*waitables, *wake], timeout)) if live else set()
        finished: list[tuple[Any, Any]] = []
        ran_before: list[Any] = []
        unstarted: list[Any] = []
        for slot in live:
            if slot.conn not in ready and slot.process.sentinel not in ready:
                continue
            try:
                while slot.conn.poll():
                    self._receive(slot, slot.conn.recv(), finished)
            except (EOFError, OSError):
                pass
            if not slot.process.is_alive():
                ran, running, rest = self.replace(slot)
                if running is not None:
                    finished.append((running, None))
                ran_before += ran
                unstarted += rest
        return finished, (ran_before, unstarted)

    def _receive(self, slot: Slot, message: Any, finished: list[tuple[Any, Any]]) -> None:
        kind = message[0]
        if kind == "ran":
            for job_id, status in message[1]:
                job = slot.jobs.popleft()
                slot.head += 1
                if not slot.jobs:
                    self.batches.append((slot.size, time.monotonic() - slot.submitted))
                if job_id in slot.handed_back:
                    continue  # released when it was handed back
                if status == "processing":  # success queued for a grouped write
                    slot.unrecorded[job_id] = job
                elif status == "unrecorded":
                    self.lost.append(job)
                finished.append((job, status))
        elif kind == "flushed":
            for job_id in message[1]:
                slot.unrecorded.pop(job_id, None)
        else:  # "unrecorded": the child could not write these outcomes
            self.lost.extend(slot.unrecorded.pop(job_id) for job_id in message[1])

    def overdue(self, now: float) -> list[Slot]:
        return [s for s in self.busy() if (d := self.deadline(s)) is not None and d <= now]

    def _split(self, slot: Slot) -> tuple[list[Any], Any, list[Any]]:
        """``(ran, running, unstarted)`` of a stopped slot: jobs that ran but whose
        success is not recorded, the job it was running (None if none; its
        ``started_at`` filled in), and jobs it had not started."""
        running = self.running(slot)
        jobs = list(slot.jobs)
        if running is None:
            return list(slot.unrecorded.values()), None, self.unstarted(slot)
        position, job, _ = running
        if job.started_at is None:
            job.started_at = self.started_at(slot)
        return [*slot.unrecorded.values(), *jobs[:position]], job, self.unstarted(slot)

    def replace(self, slot: Slot) -> tuple[list[Any], Any, list[Any]]:
        """Kill the slot's child and start a fresh one.

        Return ``(ran, running, unstarted)``: jobs that ran but whose success is not
        recorded, the job it was running (the caller's to report; None if none),
        and jobs it had not started.
        """
        self._stop(slot, kill=True)
        self.slots[slot.index] = self._spawn(slot.index)
        return self._split(slot)

    def _stop(self, slot: Slot, *, kill: bool) -> None:
        if slot.process.is_alive() and not kill:
            try:
                slot.conn.send(None)  # the child flushes its completions and exits
            except OSError:
                kill = True
        if kill and slot.process.is_alive():
            slot.process.kill()
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.conn.close()

    def close(self) -> tuple[list[Any], list[Any], list[Any]]:
        """Stop every child: idle ones first record their pending successes, busy ones
        are killed. Return ``(ran, running, unstarted)`` over all slots, as
        ``replace`` does for one."""
        ran: list[Any] = []
        running: list[Any] = []
        unstarted: list[Any] = []
        for slot in self.slots:
            finished: list[tuple[Any, Any]] = []
            try:
                if slot.jobs:
                    slot.process.kill()
                else:
                    slot.conn.send(None)  # the child records its successes and exits
                slot.process.join(timeout=5)
                while slot.conn.poll():  # what it reported before it stopped
                    self._receive(slot, slot.conn.recv(), finished)
            except (EOFError, OSError):
                pass
            self._stop(slot, kill=True)
            before, job, rest = self._split(slot)
            ran += before
            running += [job] if job is not None else []
            unstarted += rest + [job for job, status in finished if status == "skipped"]
        self.slots = []
        return ran, running, unstarted
