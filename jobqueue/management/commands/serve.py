import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Serve the API and admin with gunicorn and run workers beside it; "
        "SIGINT/SIGTERM stops them all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
        parser.add_argument("--workers", type=int, default=1, help="runworker processes")
        parser.add_argument(
            "--shutdown-timeout", type=float, default=10.0, help="seconds before SIGKILL"
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
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:jobqueue.gunicorn",
            "jobqueue.wsgi:application",
            "--bind",
            f"{options['host']}:{options['port']}",
            "--workers",
            str(options["web_workers"]),
            "--access-logfile",
            "-",
            "--graceful-timeout",
            str(int(options["shutdown_timeout"])),
        ]
        worker = [sys.executable, "manage.py", "runworker"]
        # Fixed argv built from our own options, never from user input.
        children = [subprocess.Popen(web)]  # noqa: S603
        children += [subprocess.Popen(worker) for _ in range(options["workers"])]  # noqa: S603
        self.stdout.write(
            f"Serving http://{options['host']}:{options['port']}/ (API /api/jobs, admin /admin/, "
            f"docs /docs) with {options['workers']} worker(s). Ctrl-C stops."
        )
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + options["shutdown_timeout"]
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        codes = [child.returncode for child in children]
        self.stdout.write(f"Stopped (exit codes {codes}).")
        if not stopping:
            sys.exit(1)
