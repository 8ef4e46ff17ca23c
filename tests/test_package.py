"""The app as a package: what the wheel holds and what it requires."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_pin_every_dependency_within_its_bounds():
    """The service's pins (requirements.txt) satisfy what the package declares."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
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
