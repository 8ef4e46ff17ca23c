"""The app as a package: the wheel installed in a fresh virtualenv and a fresh project.

The host project follows the README's "Use it in your own Django project" steps as they
are written there (the code blocks are read from README.md), with Django's default
settings otherwise: SQLite without WAL, CONN_MAX_AGE 0, no LOGGING, no REST_FRAMEWORK.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT, wait_for
from tests.helpers import free_port

README = (ROOT / "README.md").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def readme_block(name: str) -> str:
    """The fenced code block after ``<!-- host:<name> -->`` in the README."""
    match = re.search(rf"<!-- host:{name} -->\n```\w*\n(.*?)```", README, re.DOTALL)
    assert match, f"README has no block marked host:{name}"
    return match.group(1)


def test_requirements_pin_every_dependency_within_its_bounds():
    """The service's pins (requirements.txt) satisfy what the package declares."""
    pins = {}
    # The MariaDB/MySQL driver compiles: pinned apart (requirements-mysql.txt).
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    lines += (ROOT / "requirements-mysql.txt").read_text().splitlines()
    for line in lines:
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = next(iter(requirement.specifier)).version
    declared = [Requirement(item) for item in PROJECT["dependencies"]]
    declared += [
        Requirement(item) for extra in PROJECT["optional-dependencies"].values() for item in extra
    ]
    for requirement in declared:
        pinned = pins.get(requirement.name.lower())
        assert pinned, f"{requirement.name} is not pinned in requirements.txt"
        assert requirement.specifier.contains(pinned), f"{requirement} excludes the pin {pinned}"


# -- the wheel in a fresh project ------------------------------------------------------------

# What a new user's shell has: none of this repository's settings.
SCRUBBED = ("PYTHONPATH", "DJANGO_", "JOBS_", "DATABASE_URL", "PROMETHEUS_", "VIRTUAL_ENV")


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED)}
    return {**env, "PYTHONUNBUFFERED": "1"}


def run(*args: str | Path, cwd: Path, timeout: float = 300, **env: str) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist, and the wheel from it, as `python -m build` does for a release."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_the_jobs_app_and_only_it(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"jobs"}
    for needed in (
        "jobs/migrations/0001_initial.py",
        "jobs/management/commands/runworker.py",
        "jobs/templatetags/jobs_admin.py",
        "jobs/templates/admin/jobs/dashboard.html",
        "jobs/static/jobs/admin.css",
        "jobs/api/urls.py",
    ):
        assert needed in names
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert "Requires-Dist: Django>=6.1" in requires
    assert any(line.startswith("Requires-Dist: croniter") for line in requires)
    assert any("prometheus-client" in line and 'extra == "metrics"' in line for line in requires)


class Host:
    """A fresh `startproject` in its own virtualenv, driven as its developer would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.site = root / "site"
        self.python = self.venv / "bin" / "python"

    def manage(self, *args: str, **env: str) -> str:
        return run(self.python, "manage.py", *args, cwd=self.site, **env)

    def shell(self, code: str) -> Any:
        """Run ``code`` in ``manage.py shell``; return what it printed last, as JSON."""
        output = self.manage("shell", "-c", code)
        return json.loads(output.strip().splitlines()[-1])

    def append(self, relative: str, text: str) -> None:
        with open(self.site / relative, "a") as handle:
            handle.write("\n" + text)

    def serve(self) -> "Server":
        return Server(self)


class Server:
    """``manage.py runserver`` on a free loopback port, stopped on exit."""

    def __init__(self, host: Host) -> None:
        self.port = free_port()
        self.log = host.root / f"runserver-{self.port}.log"
        with open(self.log, "w") as handle:
            self.proc = subprocess.Popen(
                [host.python, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
                cwd=host.site,
                env=clean_env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.base = f"http://127.0.0.1:{self.port}"
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        wait_for(self._up, timeout=30, interval=0.2)

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        if token:
            headers["Authorization"] = f"Token {token}"
        data = body
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def host(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """pip install the wheel in a new virtualenv; startproject; the README's steps."""
    host = Host(tmp_path_factory.mktemp("host"))
    run(sys.executable, "-m", "venv", host.venv, cwd=host.root)
    # Dependencies resolve from the package index, as for any user (pip's cache makes it fast).
    run(host.python, "-m", "pip", "install", "--quiet", wheel, cwd=host.root, timeout=600)
    host.site.mkdir()
    run(host.venv / "bin" / "django-admin", "startproject", "hostsite", host.site, cwd=host.root)
    host.manage("startapp", "shop")
    # The README's steps, as written there.
    host.append("hostsite/settings.py", readme_block("settings"))
    host.append("hostsite/urls.py", readme_block("urls"))
    (host.site / "shop" / "tasks.py").write_text(readme_block("task"))
    # The host's own app, and a mailer whose messages the test can read.
    host.append(
        "hostsite/settings.py",
        'INSTALLED_APPS += ["shop"]\n'
        "MAILERS = {\n"
        '    "default": {\n'
        '        "BACKEND": "django.core.mail.backends.filebased.EmailBackend",\n'
        '        "OPTIONS": {"file_path": BASE_DIR / "sent-mail"},\n'
        "    }\n"
        "}\n",
    )
    commands = readme_block("commands").splitlines()
    assert commands == ["python manage.py migrate", "python manage.py runworker"]
    host.manage("migrate")
    # The README's settings leave nothing for the app's own checks to warn about.
    assert "jobs.W" not in host.manage("check")
    yield host


def enqueue_send_email(host: Host) -> str:
    """Enqueue the built-in ``send_email`` with the README's Python API block; return its id."""
    return host.shell(readme_block("python-api") + "import json\nprint(json.dumps(str(job.pk)))")


@pytest.mark.slow
def test_a_new_project_runs_its_task_and_send_email_with_the_worker(host):
    installed = host.shell(
        "import importlib.util, json, jobs\n"
        "print(json.dumps([jobs.__file__] + [importlib.util.find_spec(name) is None\n"
        "    for name in ('jobqueue', 'bench', 'tests', 'prometheus_client')]))"
    )
    assert installed[0].startswith(str(host.venv)), installed  # the wheel, not the checkout
    assert installed[1:] == [True, True, True, True]

    task_id = host.shell(
        "import json\nfrom shop.tasks import add\nprint(json.dumps(add.enqueue(2, 3).id))"
    )
    email_id = enqueue_send_email(host)
    output = host.manage("runworker", "--once")
    # Without the metrics extra, jobs run without a word about metrics.
    assert "Traceback" not in output and "metrics" not in output, output

    result = host.shell(
        "import json\n"
        "from shop.tasks import add\n"
        f"r = add.get_result({task_id!r})\n"
        "print(json.dumps([r.status, r.return_value]))"
    )
    assert result == ["SUCCESSFUL", 5]
    email = host.shell(
        "import json\n"
        "from django.tasks import default_task_backend\n"
        "import jobs\n"
        f"job = jobs.get_job(job_id={email_id!r})\n"
        f"r = default_task_backend.get_result({email_id!r})\n"
        "print(json.dumps([job.status, job.result, r.status, r.return_value]))"
    )
    done = {"sent": 1, "to": ["ada@example.com"]}
    assert email == ["done", done, "SUCCESSFUL", done]
    (sent,) = (host.site / "sent-mail").iterdir()
    assert "Subject: Your order" in sent.read_text()


@pytest.mark.slow
def test_the_mounted_api_admin_and_docs_in_a_new_project(host):
    for n in range(3):
        host.shell(
            f"import json\nfrom shop.tasks import add\nprint(json.dumps(add.enqueue({n}, 1).id))"
        )
    host.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        DJANGO_SUPERUSER_PASSWORD="a-long-test-password",
    )
    token = re.search(r"Generated token (\w+)", host.manage("drf_create_token", "admin"))[1]

    server = host.serve()
    try:
        check_api(server, token)
        check_admin(server)
    finally:
        server.stop()

    # The optional docs, health and metrics: drf-spectacular's own set-up, from the README.
    host.append("hostsite/settings.py", readme_block("docs-settings"))
    host.append("hostsite/urls.py", readme_block("docs-urls"))
    server = host.serve()
    try:
        check_docs(server, token)
    finally:
        server.stop()


def check_api(server: Server, token: str) -> None:
    """Anonymous calls are refused; filters, pages, errors and bodies work as in the service."""
    for method, path, body in [
        ("GET", "/api/jobs", None),
        ("POST", "/api/jobs", {"task": "noop", "payload": 1}),
    ]:
        status, headers, content = server.call(method, path, body)
        assert status == 401, (method, content)
        assert json.loads(content)["code"] == "not_authenticated"
        assert headers["WWW-Authenticate"] == "Token"

    status, _, content = server.call("POST", "/api/jobs", {"task": "noop"}, token=token)
    assert status == 201, content
    status, _, content = server.call(
        "POST",
        "/api/jobs",
        b"task=noop",
        token=token,
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415, content

    status, _, content = server.call("GET", "/api/jobs?task=noop", token=token)
    assert [job["task"] for job in json.loads(content)] == ["noop"]
    status, _, content = server.call("GET", "/api/jobs?status=bogus", token=token)
    assert status == 400 and list(json.loads(content)["errors"]) == ["status"]

    status, headers, content = server.call("GET", "/api/jobs?page_size=2", token=token)
    first = json.loads(content)
    assert status == 200 and len(first) == 2
    next_url = re.search(r'<([^>]+)>; rel="next"', headers["Link"])[1]
    status, _, content = server.call("GET", next_url.removeprefix(server.base), token=token)
    assert status == 200 and {job["id"] for job in json.loads(content)}.isdisjoint(
        job["id"] for job in first
    )
    status, _, content = server.call("GET", "/api/jobs?page_size=0", token=token)
    assert status == 400, content
    status, _, content = server.call("GET", "/api/jobs/not-a-job", token=token)
    assert (status, json.loads(content)["code"]) == (404, "not_found")


def check_admin(server: Server) -> None:
    """Sign in to the admin; the job list, the dashboard and the app's static files load."""
    status, _, page = server.call("GET", "/admin/login/")
    assert status == 200
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1].decode()
    form = f"csrfmiddlewaretoken={csrf}&username=admin&password=a-long-test-password&next=/admin/"
    status, _, page = server.call(
        "POST",
        "/admin/login/",
        form.encode(),
        **{"Content-Type": "application/x-www-form-urlencoded", "Referer": server.base},
    )
    assert status == 200 and b"Log out" in page, page[:500]
    status, _, page = server.call("GET", "/admin/jobs/job/")
    assert status == 200 and b"shop.tasks.add" in page
    status, _, page = server.call("GET", "/admin/")
    assert status == 200
    status, _, _ = server.call("GET", "/static/jobs/admin.css")
    assert status == 200


def check_docs(server: Server, token: str) -> None:
    status, _, content = server.call(
        "GET", "/api/schema", token=token, Accept="application/vnd.oai.openapi+json"
    )
    assert status == 200, content
    schema = json.loads(content)
    # The API's own error answers are documented: its schema class, not DRF's.
    assert "401" in schema["paths"]["/api/jobs/"]["get"]["responses"]
    status, _, page = server.call("GET", "/docs")
    assert status == 200 and b"swagger" in page.lower()
    # Swagger UI from the sidecar's static files, no CDN.
    bundle = re.search(rb'src="(/static/[^"]+swagger-ui-bundle\.js)"', page)[1].decode()
    status, _, _ = server.call("GET", bundle)
    assert status == 200
    status, _, content = server.call("GET", "/health")
    assert status == 200 and json.loads(content)["status"] == "ok"
    status, _, content = server.call("GET", "/metrics")
    assert status == 501 and "metrics extra" in json.loads(content)["detail"]
    # Still the same API policy with a REST_FRAMEWORK setting present.
    status, _, _ = server.call("GET", "/api/jobs")
    assert status == 401
