import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.conf import conf
from jobs.lifecycle import backoff

# A worker that exits is restarted after a backoff: about a second at first, doubling
# while it keeps dying, at most a minute; one that had run for a minute starts afresh.
RESTART_BASE = 1.0
RESTART_MAX = 60.0
RESTART_RESET_AFTER = 60.0
# Signals this close to the first are the same user action, delivered twice: once by
# the process group (Ctrl-C, `kill -TERM -PGID`) and once relayed (make forwards SIGTERM).
SAME_ACTION = 1.0
# Stopping: the workers stop themselves at the shutdown timeout (running jobs back to
# the queue); serve hurries them GRACE_SECONDS after it, and SIGKILLs only what still
# runs HURRY_SECONDS after that.
GRACE_SECONDS = 5.0
HURRY_SECONDS = 10.0
PR_SET_PDEATHSIG = 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, for prctl (found on first use: finding it runs ``ldconfig``)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def spawn(argv: list[str], *, hold_stop_signals: bool = False) -> subprocess.Popen:
    """Start a child in a session of its own, which gets SIGTERM if ``serve`` dies.

    In its own session, a signal to ``serve``'s process group (Ctrl-C in a terminal,
    ``kill -TERM -PGID``) does not reach it: ``serve`` alone signals its children,
    once per user action, so one Ctrl-C is one graceful stop. With ``hold_stop_signals``
    (for ``runworker`` only: it unblocks them once its handlers are in) the child starts
    with SIGTERM and SIGINT blocked, so a stop sent while it boots waits for those
    handlers and is a graceful stop, not a death by signal. (Two stops sent during
    start-up arrive as one: "stop now" needs a second one after it.)
    """
    parent = os.getpid()
    libc = _libc()

    def die_with_serve() -> None:  # in the child, before exec
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # serve died before prctl took effect
            os._exit(1)
        if hold_stop_signals:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    # Fixed argv built from our own options, never from user input.
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=die_with_serve)  # noqa: S603


class StopRequests:
    """User actions asking ``serve`` to stop: the first means "finish", the second "now".

    A signal within ``SAME_ACTION`` seconds of the first is the same action delivered
    twice (by the process group and by ``make``), not a second one.
    """

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.count == 1 and now - self.first < SAME_ACTION:
            return
        self.count += 1
        self.first = self.first or now


class Restarting:
    """A child process kept alive: started again, with backoff, whenever it exits."""

    def __init__(self, argv: list[str], name: str, say: Callable[[str], None]) -> None:
        self.argv, self.name, self.say = argv, name, say
        self.failures = 0
        self.restart_at: float | None = None
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        self.started = time.monotonic()
        return spawn(self.argv, hold_stop_signals=True)

    def check(self) -> None:
        """Restart the process if it exited and its backoff has passed."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.proc = self._start()
            return
        code = self.proc.poll()
        if code is None:
            return
        steady = now - self.started >= RESTART_RESET_AFTER
        self.failures = 1 if steady else self.failures + 1
        delay = backoff(self.failures, base=RESTART_BASE, cap=RESTART_MAX)
        self.restart_at = now + delay
        self.say(f"{self.name} exited with code {code}; restarting it in {delay:.1f}s")

    def running(self) -> subprocess.Popen | None:
        return self.proc if self.restart_at is None and self.proc.poll() is None else None


class Command(BaseCommand):
    help = (
        "Serve the API and admin with gunicorn and run workers beside it (a worker that "
        "dies is restarted, with backoff). SIGINT/SIGTERM stops them all gracefully (the "
        "workers finish their running jobs); a second one, a second or more later, at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--web-workers",
            type=int,
            default=None,
            help="gunicorn processes (default: WEB_CONCURRENCY, else 2; see jobqueue/gunicorn.py)",
        )
        parser.add_argument("--workers", type=int, default=1, help="runworker processes")
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            help="seconds running jobs and requests get to finish after Ctrl-C/SIGTERM "
            "(default JOBS_SHUTDOWN_TIMEOUT, 30); then they are stopped at once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        metrics_dir = self._metrics_dir()
        try:
            self._serve(options)
        finally:
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    def _metrics_dir(self) -> str | None:
        """Give gunicorn and the workers one PROMETHEUS_MULTIPROC_DIR; return it if made here.

        Only a directory made here is removed at exit; one the operator set is
        left alone (empty it before starting).
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
            return None
        directory = tempfile.mkdtemp(prefix="jobqueue-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # inherited by the children
        self.stdout.write(f"Metrics of all processes: PROMETHEUS_MULTIPROC_DIR={directory}")
        return directory

    def _serve(self, options: dict[str, Any]) -> None:
        timeout = options["shutdown_timeout"]
        if timeout is None:
            timeout = conf.SHUTDOWN_TIMEOUT
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:jobqueue.gunicorn",
            "jobqueue.wsgi:application",
            "--bind",
            f"{options['host']}:{options['port']}",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            str(max(1, round(timeout))),
        ]
        if options["web_workers"] is not None:
            web += ["--workers", str(options["web_workers"])]
        worker = [sys.executable, "manage.py", "runworker", "--shutdown-timeout", str(timeout)]
        # Stop requests count from here: one that arrives while the children start is
        # handled like any other once they are up.
        stop = StopRequests()
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        server = spawn(web)
        workers = [
            Restarting(worker, f"worker {n + 1}", self.stdout.write)
            for n in range(options["workers"])
        ]
        self.stdout.write(
            f"Serving http://{options['host']}:{options['port']}/ (API /api/jobs, admin /admin/, "
            f"docs /docs) with {options['workers']} worker(s). Ctrl-C stops."
        )
        # Only the web server's exit ends everything; workers are restarted.
        while not stop.count and server.poll() is None:
            for supervised in workers:
                supervised.check()
            time.sleep(0.2)
        children = [server, *filter(None, (w.running() for w in workers))]
        self._stop(children, stop, timeout)
        codes = [child.returncode for child in children]
        self.stdout.write(f"Stopped (exit codes {codes}).")
        if not stop.count:
            sys.exit(1)

    def _stop(self, children: list[subprocess.Popen], stop: StopRequests, timeout: float) -> None:
        """Ask the children to finish (SIGTERM: gunicorn and workers stop gracefully, the
        workers within the same ``timeout``); on a second stop request, or a few seconds
        after ``timeout``, ask again (gunicorn's SIGINT and a worker's second signal mean
        now: running jobs go back to the queue); SIGKILL only what still runs
        ``HURRY_SECONDS`` after that."""
        server = children[0]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout + GRACE_SECONDS
        hurried_at = None
        while any(child.poll() is None for child in children):
            now = time.monotonic()
            if hurried_at is None and (stop.count > 1 or now >= deadline):
                hurried_at = now
                for child in children:
                    if child.poll() is None:
                        child.send_signal(signal.SIGINT if child is server else signal.SIGTERM)
            if hurried_at is not None and now >= hurried_at + HURRY_SECONDS:
                for child in children:
                    if child.poll() is None:
                        child.kill()
                        child.wait()
                break
            time.sleep(0.05)
