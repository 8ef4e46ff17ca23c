"""Remote workers' throughput: W reference clients drain no-op external jobs over HTTP.

    python -m bench.remote sqlite|postgres [--workers 2] [--jobs 5000] [--batch 100]
        [--web-workers 2] [--port 18701]

Starts ``manage.py serve --workers 0`` (gunicorn only) on a fresh database, queues
``--jobs`` jobs of an external task, and runs ``--workers`` processes that use the
reference client (``clients/python/jobqueue_worker.Client``): claim ``--batch``
jobs, report each success, until a claim comes back empty. Prints one JSON line:
jobs/s from the first client's start to the last one's exit (HTTP, JSON and the
lifecycle's writes per job), beside which ``python -m bench.drain`` gives the
built-in worker's drain on the same machine. Writes docs/remote-<database>.md
(``--output``).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import report
from bench.common import ROOT, database_url, drop_database, emit, env_for, wait_for
from bench.django_env import setup

EXTERNAL = json.dumps({"bench.remote": {}})
CLIENT = """
import sys
sys.path.insert(0, "clients/python")
from jobqueue_worker import Client
client = Client(sys.argv[1], sys.argv[2], sys.argv[3])
while jobs := client.claim(["bench.remote"], int(sys.argv[4]), 0):
    for job in jobs:
        client.succeed(job, None)
"""


def run(kind: str, workers: int, jobs: int, batch: int, web_workers: int, port: int) -> dict:
    url = database_url(kind, "remote")
    extra = {"JOBS_EXTERNAL_TASKS": EXTERNAL, "JOBS_WRITE_RATE": "none"}
    os.environ.update(extra)
    setup(url)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    from jobs import lifecycle
    from jobs.models import Job, Status

    user = get_user_model().objects.create_user("bench-remote")
    user.user_permissions.set(Permission.objects.filter(codename="work_job"))
    token = Token.objects.create(user=user).key
    lifecycle.enqueue_many([{"task": "bench.remote"} for _ in range(jobs)])
    env = env_for(url, **extra)
    command = [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "0"]
    command += ["--web-workers", str(web_workers)]
    serve = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(listening, timeout=60)
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, base, token, f"bench-{n}", str(batch)], cwd=ROOT
            )
            for n in range(workers)
        ]
        for proc in clients:
            if proc.wait(timeout=600) != 0:
                raise SystemExit("a client failed")
        elapsed = time.perf_counter() - started
        done = Job.objects.filter(status=Status.DONE).count()
        if done != jobs:
            raise SystemExit(f"{done} of {jobs} jobs done")
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    drop_database(url)
    return emit(
        {
            "bench": "remote",
            "database": kind,
            "workers": workers,
            "web_workers": web_workers,
            "batch": batch,
            "jobs": jobs,
            "seconds": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed),
        }
    )


def markdown(result: dict, machine: dict, seconds: float) -> str:
    return report.standalone(
        f"Remote workers over HTTP ({result['database']})",
        machine,
        seconds,
        "SQLite" if result["database"] == "sqlite" else "PostgreSQL",
        f"## {result['workers']} reference clients, claims of {result['batch']}\n\n"
        f"`manage.py serve --workers 0 --web-workers {result['web_workers']}`; each client "
        "claims a batch, then reports each job's success in a request of its own, until a "
        "claim comes back empty. Every job checked done.\n\n"
        + report.table(
            "jobs | seconds | jobs/s",
            [[f"{result['jobs']:,}", result["seconds"], f"{result['jobs_per_s']:,}"]],
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", choices=["sqlite", "postgres"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=18701)
    parser.add_argument("--output", type=Path, help="default: docs/remote-<database>.md")
    args = parser.parse_args()
    machine = report.machine()
    started = time.monotonic()
    result = run(args.database, args.workers, args.jobs, args.batch, args.web_workers, args.port)
    output = args.output or ROOT / "docs" / f"remote-{args.database}.md"
    report.write(output, markdown(result, machine, time.monotonic() - started))


if __name__ == "__main__":
    main()
