from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import retention
from jobs.conf import parse_age
from jobs.models import FINISHED_STATUSES


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than their retention age (JOBS_RETAIN_DONE, "
        "JOBS_RETAIN_FAILED, JOBS_RETAIN_CANCELLED), in small batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )
        parser.add_argument(
            "--older-than",
            help="Age for every chosen status instead of the settings, e.g. 7d, 12h, 30m, 45s.",
        )
        parser.add_argument(
            "--status",
            action="append",
            dest="statuses",
            choices=[str(s) for s in FINISHED_STATUSES],
            help="Purge only this status (repeatable). Default: all finished statuses.",
        )
        parser.add_argument("--batch-size", type=int, help="Jobs deleted per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = None
        if options["older_than"] is not None:
            try:
                older_than = parse_age(options["older_than"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if older_than is None:
                raise CommandError("--older-than needs an age, not 'never'")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        counts = retention.purge(
            statuses=options["statuses"],
            older_than=older_than,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
        )
        verb = "would delete" if options["dry_run"] else "deleted"
        for status, count in counts.items():
            self.stdout.write(f"{status}: {verb} {count}")
        self.stdout.write(f"total: {verb} {sum(counts.values())}")
