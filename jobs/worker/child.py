"""What runs inside an executor child: ``child_main`` takes batches of jobs from its
pipe and runs each with ``runner.execute``, telling its worker through shared memory
(``Progress``) which job it runs and since when.

The child side of ``jobs.worker.executor``, which spawns it and reads ``Progress``.
It never claims a job nor decides when to stop: it runs what it is handed, skips
what it is told to skip, and exits when its pipe closes or its worker says so.
An outcome it cannot write while the database is unreachable stays in its
``runner.Completions`` and is retried until written (the worker, which still holds
the job, keeps renewing its lease); it reports the job ``"flushed"`` then.
Children ignore SIGINT/SIGTERM and die with their forkserver (``_die_with_parent``).
"""

import ctypes
import ctypes.util
import logging
import signal
import threading
import time
from collections import deque
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import django
from django.db import DatabaseError, close_old_connections, connections

logger = logging.getLogger(__name__)

# How long a stopping child keeps trying to record what an outage kept (seconds); its
# worker waits 5 s before killing it.
FINAL_FLUSH_SECONDS = 4.0


class Progress:
    """Indexes into a slot's shared array of doubles.

    Written by the child: ``STARTED``, the sequence number of the job it started
    last (-1: none); ``SINCE``, when, on the monotonic clock; ``SINCE_WALL``,
    when, as a Unix time; ``RETURNED``, the sequence number of the last job whose
    task code returned (its outcome is being, or has been, recorded: nothing
    left to stop). Written by the worker: ``NOTICES``, how many skip notices it
    has sent, so the child reads its pipe between jobs only when one is there;
    ``LIMIT``, the last sequence number the child may start (the worker lowers it
    to hand back the jobs waiting behind a long one). ``LIMIT`` and ``STARTED``
    change only under the slot's lock, so a job is either started or handed back.
    """

    STARTED, SINCE, SINCE_WALL, RETURNED, NOTICES, LIMIT = range(6)
    NO_LIMIT = float("inf")
    INITIAL = (-1.0, 0.0, 0.0, -1.0, 0.0, NO_LIMIT)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the forkserver) dies.

    The forkserver exits when the worker dies, so a task never outlives a
    ``kill -9``-ed worker: its job is recovered, not raced by an orphan.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        logger.debug("PR_SET_PDEATHSIG unavailable; orphaned executors finish their job")


class _Recorder:
    """Records quick successes while the next job's task runs, so that a success
    never waits for a long job that follows it: a thread of the executor, with a
    database connection of its own, opened the first time it is needed.

    ``guard`` keeps the thread and the executor's loop apart: the loop holds it
    except while task code runs, and the thread takes it only then, after the
    successes have waited ``max_delay``.
    """

    def __init__(self, pending: Any, max_delay: float, record: Any) -> None:
        self.guard = threading.Lock()
        self.guard.acquire()
        self.released = False
        self.wake = threading.Event()
        self.pending = pending  # () -> bool: successes waiting
        self.max_delay = max_delay
        self.record = record
        self.thread: threading.Thread | None = None

    def task_starts(self) -> None:
        if self.pending():
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)
                self.thread.start()
            self.wake.set()
        self.released = True
        self.guard.release()

    def task_returned(self) -> None:
        if self.released:
            self.guard.acquire()
            self.released = False

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(self.max_delay)
            if self.guard.acquire(blocking=False):  # a task still runs
                try:
                    self.record()
                except Exception:
                    logger.exception("recording successes while a task runs failed")
                finally:
                    self.guard.release()


def _start(progress: Any, lock: Any, sequence: int) -> bool:
    """Mark job ``sequence`` started, unless the worker handed it back (``LIMIT``).

    Shared memory, no message: the worker sees which job runs, and since when.
    The sequence number goes last, so it never pairs with a stale start.
    """
    with lock:
        if sequence > progress[Progress.LIMIT]:
            return False
        progress[Progress.SINCE], progress[Progress.SINCE_WALL] = time.monotonic(), time.time()
        progress[Progress.STARTED] = sequence
    return True


def _gate(lifecycle: Any, job: Any) -> bool:
    """Whether ``job`` may start: a rate-limited one once its start is stamped (a
    database error counts as no: the job goes back to the queue)."""
    if not hasattr(job, "rate_slots"):
        return True
    try:
        return lifecycle.start_rated(job)
    except DatabaseError as exc:
        logger.warning("job=%s rate slot not stamped, handed back: %s", job.pk, exc)
        close_old_connections()
        return False


def child_main(
    conn: Connection,
    progress: Any,
    lock: Any,
    worker_id: str,
    db_names: dict[str, str],
    max_jobs: int | None,
) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    django.setup()
    # Use exactly the databases the worker uses (tests point it at a test database).
    for alias, name in db_names.items():
        connections[alias].settings_dict["NAME"] = name
    # Imported after django.setup(): this module is unpickled in a fresh child, and the
    # runner imports the models, which need the app registry.
    from jobs import lifecycle, runner
    from jobs.observability.log import ensure_console
    from jobs.worker.connections import keep_connections

    ensure_console()
    keep_connections()

    completions = runner.Completions(worker_id)
    reports: list[tuple[Any, str]] = []  # (job id, status) of jobs run, not yet reported
    skip: set[Any] = set()  # ids of this batch's jobs the worker took back
    inbox: deque[Any] = deque()  # batches (or the stop message) read while reading notices

    def report() -> None:
        if reports:
            conn.send(("ran", reports[:]))
            reports.clear()

    def flush() -> None:
        report()
        if completions.retry_in():
            return  # the database was unreachable a moment ago: wait for the retry time
        try:
            settled = completions.flush()
        except DatabaseError as exc:
            close_old_connections()
            if (delay := completions.retry_in()) is not None:
                # Kept: recorded once the database answers; the worker renews the leases.
                logger.warning(
                    "worker=%s database unavailable, outcomes kept, retry=%s in %.1fs: %s",
                    worker_id,
                    completions.outages,
                    delay,
                    " ".join(str(exc).split()),
                )
            else:  # not an outage: the worker hands these jobs back to run again
                dropped = completions.drop()
                logger.warning(
                    "worker=%s could not record %s outcomes: %s", worker_id, len(dropped), exc
                )
                conn.send(("unrecorded", dropped))
            settled = completions.settled
            completions.settled = []
        if settled:
            conn.send(("flushed", settled))

    def record_while_running() -> None:
        """Write the waiting successes (only those: failures, progress and outages are
        the loop's) from the recorder thread."""
        if completions.failures or completions.progress or completions.outages:
            return
        if completions.pending and completions.due():
            try:
                flush()
            finally:
                connections.close_all()  # this thread's: reopened when next needed

    recorder = _Recorder(
        lambda: bool(completions.pending), completions.max_delay, record_while_running
    )

    def returned() -> None:  # called by the runner before it records the outcome
        progress[Progress.RETURNED] = progress[Progress.STARTED]
        recorder.task_returned()

    notices = 0.0  # skip notices read so far

    def read_notices() -> None:
        nonlocal notices
        if progress[Progress.NOTICES] == notices:
            return  # none sent: no system call
        notices = progress[Progress.NOTICES]
        while conn.poll():
            message = conn.recv()
            if isinstance(message, tuple):  # ("skip", ids)
                skip.update(message[1])
            else:
                inbox.append(message)

    ran = 0  # also the sequence number of the next job, as the worker counts them
    while max_jobs is None or ran < max_jobs:
        if completions.waiting() and not inbox and not conn.poll():
            flush()  # nothing in hand: record what is done now
        report()
        # During a database outage: retry the kept outcomes until written or new jobs come.
        while completions.waiting() and not inbox and not conn.poll(completions.retry_in() or 0):
            flush()
        try:
            jobs = inbox.popleft() if inbox else conn.recv()
        except EOFError:
            break
        if jobs is None:
            break
        if isinstance(jobs, tuple):  # a notice about a batch already finished
            continue
        skip.clear()  # notices sent before this batch were about earlier ones
        close_old_connections()
        for job in jobs:
            read_notices()
            # A rate-limited job starts only once its slot is stamped (lifecycle.start_rated).
            if job.pk in skip or not _gate(lifecycle, job) or not _start(progress, lock, ran):
                reports.append((job.pk, "skipped"))
                ran += 1
                continue
            started = progress[Progress.SINCE]
            job.started_at = datetime.fromtimestamp(progress[Progress.SINCE_WALL], UTC)
            recorder.task_starts()
            try:
                status = runner.execute(
                    job, worker_id=worker_id, completions=completions, returned=returned
                )
            except DatabaseError as exc:
                logger.warning("job=%s outcome unrecorded: %s", job.pk, exc)
                close_old_connections()
                status = "unrecorded"
            finally:
                recorder.task_returned()
            reports.append((job.pk, status))
            # Quick successes are recorded, and reported, in groups; a slow job is not
            # worth waiting for company, and anything else is reported at once.
            if completions.due() or time.monotonic() - started >= completions.max_delay:
                flush()
            elif status != "processing":
                report()
            ran += 1
    # Stopping: a last try for outcomes kept during an outage (the worker waits 5 s).
    deadline = time.monotonic() + FINAL_FLUSH_SECONDS
    flush()
    while completions.waiting() and time.monotonic() < deadline:
        time.sleep(min(completions.retry_in() or 0, max(0.0, deadline - time.monotonic())))
        flush()
