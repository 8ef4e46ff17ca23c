"""The executor pool: child processes that run tasks for a worker.

A worker never runs task code itself. Each of its ``size`` slots owns one child
process, forked from a forkserver that has Django loaded, and hands it one job
at a time over a pipe; the child answers with a ``runner.Result``. Because the
task runs in a process of its own, the worker can enforce a timeout on code that
never returns (``while True: pass``, a blocking C call) or stop a cancelled job:
it kills the child and starts a fresh one. ``max_jobs_per_child`` recycles
children to contain leaks. Children ignore SIGINT/SIGTERM: the worker decides
when they stop.
"""

import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

logger = logging.getLogger(__name__)

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["jobs.boot"])


def _child_main(
    conn: Connection, worker_id: str, db_names: dict[str, str], max_jobs: int | None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import django

    django.setup()
    from django.db import close_old_connections, connections

    # Use exactly the databases the worker uses (tests point it at a test database).
    for alias, name in db_names.items():
        connections[alias].settings_dict["NAME"] = name
    from jobs import runner

    ran = 0
    while max_jobs is None or ran < max_jobs:
        try:
            job = conn.recv()
        except EOFError:
            break
        if job is None:
            break
        close_old_connections()
        conn.send(runner.execute(job, worker_id=worker_id))
        ran += 1


@dataclass
class Slot:
    """One child process and the job it is running, if any."""

    index: int
    process: Any
    conn: Connection
    job: Any = None
    started: float = 0.0
    deadline: float | None = None


class Pool:
    def __init__(self, size: int, *, worker_id: str, max_jobs_per_child: int | None = None) -> None:
        from django.db import connections

        self.size = size
        self.worker_id = worker_id
        self.max_jobs_per_child = max_jobs_per_child
        self.db_names = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
        self.slots: list[Slot] = []

    def start(self) -> None:
        self.slots = [self._spawn(index) for index in range(self.size)]

    def _spawn(self, index: int) -> Slot:
        parent, child = _context.Pipe()
        process = _context.Process(
            target=_child_main,
            args=(child, self.worker_id, self.db_names, self.max_jobs_per_child),
            name=f"jobs-executor-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        return Slot(index=index, process=process, conn=parent)

    def idle(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.job is None]

    def busy(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.job is not None]

    def submit(self, slot: Slot, job: Any, *, timeout: float | None) -> None:
        """Hand ``job`` to the idle ``slot``; its deadline starts now."""
        slot.job, slot.started = job, time.monotonic()
        slot.deadline = slot.started + timeout if timeout else None
        slot.conn.send(job)

    def wait(self, timeout: float, *, wake: int | None = None) -> list[tuple[Any, Any]]:
        """Wait up to ``timeout`` for results; return ``(job, new status or None)`` pairs.

        ``None`` means the child died before answering; the slot is then replaced.
        A finished slot is idle again on return. A byte on the ``wake`` file
        descriptor ends the wait early.
        """
        busy = self.busy()
        if not busy:
            return []
        waitables: list[Any] = [s.conn for s in busy] + [s.process.sentinel for s in busy]
        ready = set(wait([*waitables, *([wake] if wake is not None else [])], timeout))
        finished = []
        for slot in busy:
            if slot.conn not in ready and slot.process.sentinel not in ready:
                continue
            result = None
            try:
                if slot.conn.poll():
                    result = slot.conn.recv()
            except (EOFError, OSError):
                result = None
            finished.append((slot.job, result))
            slot.job, slot.deadline = None, None
            if result is None or not slot.process.is_alive() or self._retiring(slot):
                self.replace(slot, kill=result is None)
        return finished

    def _retiring(self, slot: Slot) -> bool:
        # A child that reached max_jobs_per_child exits after its last answer.
        slot.process.join(timeout=0)
        return slot.process.exitcode is not None

    def overdue(self, now: float) -> list[Slot]:
        return [s for s in self.busy() if s.deadline is not None and s.deadline <= now]

    def replace(self, slot: Slot, *, kill: bool = True) -> None:
        """Stop the slot's child (killing it if asked) and start a fresh one in its place."""
        self._stop(slot, kill=kill)
        fresh = self._spawn(slot.index)
        self.slots[slot.index] = fresh

    def _stop(self, slot: Slot, *, kill: bool) -> None:
        if kill and slot.process.is_alive():
            slot.process.kill()
        elif slot.process.is_alive():
            try:
                slot.conn.send(None)
            except OSError:
                slot.process.kill()
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.conn.close()

    def close(self, *, kill: bool = False) -> None:
        for slot in self.slots:
            self._stop(slot, kill=kill or slot.job is not None)
        self.slots = []
