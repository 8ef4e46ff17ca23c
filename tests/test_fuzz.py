"""Fuzz the whole API with schemathesis, over real HTTP, from its own OpenAPI schema.

A live server (``live_server``: the project's WSGI app on a loopback port, on the
test database) answers ``st run`` with a real token of a user who holds every job
permission. All phases (examples, coverage, fuzzing, stateful) and all checks with
their default expectations: any 5xx, any undocumented status, content type or
header, any response that breaks the schema, a schema-valid request the server
refuses or a schema-invalid one it accepts fails the test. At least 2,000 test
cases per run (per database in ``make test``).

``tests/fuzz_hooks.py`` generates the two string formats the schema names but JSON
Schema does not define (cron expressions, time zones). ``http_request`` may only
call ``hooks.invalid``, a name that never resolves: ``POST /run`` of such a job
makes no request.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.signals import request_started
from rest_framework.authtoken.models import Token

from jobs import tasks
from jobs.tasks import registry

ROOT = Path(__file__).resolve().parent.parent
MIN_CASES = 2000

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def token() -> str:
    user = get_user_model().objects.create_user("fuzzer")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs"))
    return Token.objects.create(user=user).key


def test_schemathesis_finds_no_failures(live_server, token, settings, monkeypatch, capsys):
    settings.JOBS_SIMULATE_SECONDS = 0
    settings.JOBS_WRITE_RATE = None
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["hooks.invalid"]
    # Only the built-in tasks: the test tasks sleep, write files and fail on purpose.
    builtin = {k: v for k, v in tasks.registered().items() if not k.startswith("test.")}
    monkeypatch.setattr(registry, "_registry", builtin)
    tasks.register_external("fuzz.external")  # the worker protocol has a task to claim
    settings.JOBS_WORKER_MAX_WAIT = 0.05  # long polls: short, or the run takes minutes
    served: list[str] = []

    def count(sender: object, environ: dict, **kwargs: object) -> None:
        served.append(environ.get("PATH_INFO", ""))

    request_started.connect(count, weak=False)
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        f"{live_server.url}/api/schema",
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("FUZZ_EXAMPLES", "60"),
        "--seed",
        os.environ.get("FUZZ_SEED", "1"),
        "--workers",
        "2",
        "--no-color",
    ]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", "PYTHONPATH": str(ROOT)},
        )
    finally:
        request_started.disconnect(count)
    cases = re.search(r"Test cases:\s+(\d+) generated", result.stdout)
    phases = re.findall(
        r"(Examples|Coverage|Fuzzing|Stateful) \(in [^)]*\)\s*\n\s*(.+)", result.stdout
    )
    summary = (
        f"schemathesis: {cases.group(1) if cases else '?'} test cases generated, "
        f"{len(served)} HTTP requests served, exit code {result.returncode}; "
        + "; ".join(f"{phase}: {outcome.strip()}" for phase, outcome in phases)
    )
    with capsys.disabled():
        print(f"\n{summary}")  # noqa: T201 - the run size belongs in the test log
    assert result.returncode == 0, f"{summary}\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert cases and int(cases.group(1)) >= MIN_CASES, summary
    assert len(served) >= MIN_CASES, summary
