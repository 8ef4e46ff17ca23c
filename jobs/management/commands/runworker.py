from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.worker import Worker


class Command(BaseCommand):
    help = "Run a worker: claim queued jobs and run their tasks until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to serve (repeatable). Default: all queues.",
        )
        parser.add_argument("--poll-interval", type=float, help="Idle wait in seconds.")
        parser.add_argument("--batch", type=int, help="Jobs claimed per round trip.")
        parser.add_argument("--max-jobs", type=int, help="Exit after running this many jobs.")
        parser.add_argument(
            "--once", action="store_true", help="Run the jobs that are due, then exit."
        )
        parser.add_argument("--worker-id", help="Worker id (unique per process; generated).")

    def handle(self, *args: Any, **options: Any) -> None:
        worker = Worker(
            queues=options["queues"],
            worker_id=options["worker_id"],
            poll_interval=options["poll_interval"],
            batch=options["batch"],
            max_jobs=options["max_jobs"],
            burst=options["once"],
        )
        worker.run()
