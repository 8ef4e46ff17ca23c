from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import lifecycle

SHOWN = ("concurrency", "key_concurrency", "rate", "key_rate", "processing", "queued", "due")


class Command(BaseCommand):
    help = (
        "Pause or resume a queue, or show the queues' flow control and usage: "
        "`queue pause mail`, `queue resume mail`, `queue list`, `queue show mail`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["pause", "resume", "list", "show"])
        parser.add_argument("name", nargs="?", help="The queue (pause, resume, show).")

    def handle(self, *args: Any, **options: Any) -> None:
        action, name = options["action"], options["name"]
        if action == "list":
            for queue in lifecycle.all_limits():
                self._show(queue)
            return
        if not name or not lifecycle.QUEUE_NAME.fullmatch(name):
            raise CommandError(f"{action} needs a queue name (letters, digits, '_', '.', ':', '-')")
        if action == "pause":
            lifecycle.pause_queue(name=name)
            self.stdout.write(f"queue {name}: paused (running jobs finish)")
        elif action == "resume":
            lifecycle.resume_queue(name=name)
            self.stdout.write(f"queue {name}: resumed")
        else:
            self._show(name)

    def _show(self, name: str) -> None:
        state = lifecycle.queue_state(name)
        shown = " ".join(f"{key}={state[key] if state[key] is not None else '-'}" for key in SHOWN)
        self.stdout.write(f"{name}: {'paused' if state['paused'] else 'active'} {shown}")
