"""Production settings: ``check --deploy`` is clean when configured, and explained when not."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs manage.py in a fresh interpreter

ROOT = Path(__file__).resolve().parent.parent
KEY = "k" * 10 + "-a-long-random-enough-test-secret-key-for-check-deploy-0123456789"
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": KEY,
    "DJANGO_ALLOWED_HOSTS": "jobs.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://jobs.example.com",
    "DJANGO_HTTPS": "1",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
    "DJANGO_EMAIL_HOST": "smtp.example.com",
}
DJANGO_VARS = re.compile(r"^(DJANGO_|JOBS_)")


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not DJANGO_VARS.match(k)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_reports_only_what_the_readme_explains():
    """With DEBUG off and nothing else set (plain HTTP), each warning is in "Deploying"."""
    result = manage("check", "--deploy", env={"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": KEY})
    reported = set(re.findall(r"\(((?:security|mail)\.\w+)\)", result.stdout + result.stderr))
    assert reported, result.stdout + result.stderr  # HTTPS is opt-in, so some are expected
    readme = (ROOT / "README.md").read_text()
    deploying = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    assert {check for check in reported if check not in deploying} == set()


def test_hosts_origins_and_https_come_from_the_environment():
    result = manage("diffsettings", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    settings = result.stdout
    assert "ALLOWED_HOSTS = ['jobs.example.com']" in settings
    assert "CSRF_TRUSTED_ORIGINS = ['https://jobs.example.com']" in settings
    assert "SESSION_COOKIE_SECURE = True" in settings
    assert "SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')" in settings
    assert f"SECRET_KEY = '{KEY}'" in settings
