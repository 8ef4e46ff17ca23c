import argparse
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from jobs.exceptions import database_unavailable
from jobs.observability.log import ensure_console
from jobs.worker.loop import Worker


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


class Command(BaseCommand):
    help = "Run a worker: claim queued jobs and run their tasks until stopped."
    # Run by handle(): on MariaDB/MySQL the model checks ask the server's version, and a
    # worker started before its database answers must wait for it, not crash.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to serve (repeatable). Default: all queues.",
        )
        parser.add_argument(
            "--concurrency", type=_at_least_one, default=1, help="Jobs run at once."
        )
        parser.add_argument("--poll-interval", type=float, help="Idle wait in seconds.")
        parser.add_argument(
            "--batch",
            type=_at_least_one,
            help="The most jobs claimed per executor per round trip (JOBS_BATCH_SIZE, 100).",
        )
        parser.add_argument(
            "--max-jobs", type=_at_least_one, help="Exit after running this many jobs."
        )
        parser.add_argument(
            "--max-jobs-per-child",
            type=_at_least_one,
            help="Replace an executor after this many jobs.",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            help="Seconds to let running jobs finish after SIGTERM (JOBS_SHUTDOWN_TIMEOUT).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run the jobs that are due, then exit."
        )
        parser.add_argument("--worker-id", help="Worker id (unique per process; generated).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options.get("skip_checks"):
            self._check()
        undo_logging = ensure_console()
        try:
            worker = self._worker(options)
        except ImproperlyConfigured as exc:
            undo_logging()
            raise CommandError(str(exc)) from None
        try:
            worker.run()
        except KeyboardInterrupt:
            sys.exit(1)
        finally:
            undo_logging()

    def _check(self) -> None:
        """The system checks, unless the database does not answer yet (then the worker
        waits for it: see "Faults" in the README)."""
        try:
            self.check()
        except DatabaseError as exc:
            if not database_unavailable(exc):
                raise
            self.stderr.write(f"System checks skipped, no answer from the database: {exc}")

    def _worker(self, options: dict[str, Any]) -> Worker:
        return Worker(
            queues=options["queues"],
            worker_id=options["worker_id"],
            poll_interval=options["poll_interval"],
            batch=options["batch"],
            concurrency=options["concurrency"],
            max_jobs=options["max_jobs"],
            max_jobs_per_child=options["max_jobs_per_child"],
            shutdown_timeout=options["shutdown_timeout"],
            burst=options["once"],
        )
