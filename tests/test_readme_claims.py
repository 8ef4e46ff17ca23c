"""The README's tables against the code, so that they cannot drift: the configuration table
(every default it states is the one ``jobs.conf`` returns, every setting ``jobs.conf`` reads is
in it), the endpoint table (the URL configuration and the OpenAPI schema), each command's
options (its argparse parser) and the Python API table (the functions' signatures)."""

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs.conf import _Conf, conf, parse_age

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(JOBS_[A-Z_]+)`(?: / `(JOBS_[A-Z_]+)`)? \| ([^|]*) \|", re.M)


def documented() -> dict[str, str]:
    """Each ``JOBS_*`` setting of the table with the default the README gives it."""
    table: dict[str, str] = {}
    for first, second, default in ROW.findall(README.read_text()):
        if second:  # "`A` / `B` | a / b": one value each
            table[first], table[second] = (part.strip() for part in default.split(" / "))
        else:
            table[first] = default.strip()
    return table


def matches(text: str, value: Any) -> bool:
    """Whether the README's ``text`` states ``value``."""
    names = re.findall(r"`([^`]+)`", text)
    plain = text.replace("`", "")
    if isinstance(value, bool):
        return plain == ("on" if value else "off")
    if value in ("", [], {}):
        return plain.startswith("empty")
    if isinstance(value, list):  # class paths: the README names each, dotted or DRF's short name
        return all(any(path == n or path.endswith(f".{n}") for n in names) for path in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = re.match(r"[\d.]+", plain)
        return number is not None and float(number.group()) == value
    if isinstance(value, timedelta):  # retention ages: `7d`
        return bool(names) and parse_age(names[0]) == value
    return plain == str(value)


SETTINGS = sorted(name for name, value in vars(_Conf).items() if isinstance(value, property))


@pytest.mark.parametrize("attribute", SETTINGS)
def test_each_setting_is_in_the_readme_with_its_default(attribute, settings, monkeypatch):
    name = f"JOBS_{attribute}"
    monkeypatch.delenv(name, raising=False)
    if hasattr(settings, name):
        delattr(settings, name)
    table = documented()
    assert name in table, f"{name} is read by jobs.conf but missing from the README's table"
    default = getattr(conf, attribute)
    if attribute == "POLL_INTERVAL":  # one default per database
        assert table[name] == "0.05 (SQLite), 0.5 (PostgreSQL), 0.1 (MariaDB/MySQL)"
        return
    assert matches(table[name], default), f"README says {table[name]!r}, the code {default!r}"


def test_the_check_catches_a_wrong_default():
    assert not matches("50", 100) and not matches("`7d`", parse_age("30d"))
    assert not matches("`jobs.api.permissions.Other`", ["jobs.api.permissions.ModelPermissions"])
    assert matches("DRF's `JSONRenderer`", ["rest_framework.renderers.JSONRenderer"])


# -- the endpoint table -----------------------------------------------------------------------

ENDPOINT = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^` ]*)` \| ([^|]*) \|", re.M)


def documented_endpoints() -> dict[tuple[str, str], str]:
    """Each (method, path) of the README's endpoint table, with its "needs" cell."""
    return {(m, p): needs.strip() for m, p, needs in ENDPOINT.findall(README.read_text())}


def schema_endpoints() -> set[tuple[str, str]]:
    """Each (method, path) of the OpenAPI schema the service publishes, named as the README
    names them (slashes trimmed, ``{id}``, a task's ``{name}``)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    served = set()
    for path, operations in schema["paths"].items():
        path = path.rstrip("/").replace("{pk}", "{id}")
        if path.startswith("/api/tasks/"):
            path = path.replace("{id}", "{name}")
        served |= {(method.upper(), path) for method in operations}
    return served


def differences(documented: set, served: set) -> tuple[set, set]:
    """(in the README's API rows but not served, served but not in the README)."""
    api = {(m, p) for m, p in documented if p.startswith("/api/") and p != "/api/schema"}
    return api - served, served - api


def test_the_endpoint_table_lists_every_api_operation_and_nothing_else():
    extra, missing = differences(set(documented_endpoints()), schema_endpoints())
    assert extra == set(), "in the README but not served"
    assert missing == set(), "served but missing from the README's endpoint table"


def test_every_endpoint_in_the_table_resolves_and_every_top_level_route_is_in_it():
    from django.urls import get_resolver, resolve

    documented = documented_endpoints()
    for _, path in documented:
        resolve(path.replace("{id}", "1").replace("{name}", "echo"))  # raises Resolver404
    top_level = {
        pattern.pattern.regex.pattern.strip("^$").replace("/?", "")
        for pattern in get_resolver().url_patterns
        if getattr(pattern, "name", None)  # named views; admin/, api/ and api-auth/ are includes
    }
    assert top_level == {"api/schema", "docs", "health", "metrics"}
    assert {f"/{route}" for route in top_level} <= {path for _, path in documented}


def needs(method: str, path: str) -> str:
    """What the code asks of a caller of ``method path``, in the README's words."""
    from django.urls import resolve
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.test import APIRequestFactory

    from jobs.api.permissions import required_verb

    match = resolve(path.replace("{id}", "1").replace("{name}", "echo"))
    view = match.func.cls()
    view.action = getattr(match.func, "actions", {}).get(method.lower())
    declared = getattr(view, "required_permissions", None)
    if IsAuthenticated in view.permission_classes or declared == []:
        return "a signed-in user"
    if declared:
        return ", ".join(f"`{perm}`" for perm in declared)
    model = getattr(view, "permission_model", None) or view.queryset.model
    request = APIRequestFactory().generic(method, path)
    return f"`jobs.{required_verb(request, view)}_{model._meta.model_name}`"


def test_the_endpoint_table_says_what_each_api_call_needs():
    rows = documented_endpoints()
    api = {
        e: cell for e, cell in rows.items() if e[1].startswith("/api/") and e[1] != "/api/schema"
    }
    wrong = {e: (cell, needs(*e)) for e, cell in api.items() if cell != needs(*e)}
    assert wrong == {}, "README's 'needs' against the code's"


def test_the_endpoint_checks_catch_a_wrong_row():
    rows = set(documented_endpoints())
    renamed = rows - {("POST", "/api/jobs/{id}/cancel")} | {("POST", "/api/jobs/{id}/abort")}
    assert differences(renamed, schema_endpoints()) == (
        {("POST", "/api/jobs/{id}/abort")},
        {("POST", "/api/jobs/{id}/cancel")},
    )
    assert needs("DELETE", "/api/jobs/{id}") == "`jobs.delete_job`" != "`jobs.change_job`"


# -- command options --------------------------------------------------------------------------

# Where the README lists each command's options, ending with the sentence.
OPTIONS = {
    "runworker": "`runworker` options: ",
    "purgejobs": "`purgejobs` options: ",
    "serve": "`manage.py serve`, whose options are ",
}


def documented_options(lead: str) -> set[str]:
    text = README.read_text()
    assert lead in text, f"the README no longer lists options after {lead!r}"
    sentence = re.split(r"\.\s", text.split(lead, 1)[1], maxsplit=1)[0]
    return set(re.findall(r"`(--[a-z-]+)`", sentence))


def command_options(name: str) -> set[str]:
    from django.core.management import BaseCommand, load_command_class

    app = "jobqueue" if name == "serve" else "jobs"
    own = load_command_class(app, name).create_parser("manage.py", name)
    base = BaseCommand().create_parser("manage.py", "base")
    strings = {s for action in own._actions for s in action.option_strings}
    return strings - {s for a in base._actions for s in a.option_strings}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_the_readme_lists_each_command_option(command):
    assert documented_options(OPTIONS[command]) == command_options(command)


def test_the_option_check_catches_a_missing_option(monkeypatch):
    text = README.read_text().replace("`--once`, ", "")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text)
    assert command_options("runworker") - documented_options(OPTIONS["runworker"]) == {"--once"}


# -- the Python API ---------------------------------------------------------------------------

FUNCTION = re.compile(r"^\| `([a-z_]+)\(([^)]*)\)` \|", re.M)


def test_the_python_api_table_names_each_function_with_its_arguments():
    import inspect

    import jobs

    rows = dict(FUNCTION.findall(README.read_text()))
    assert set(rows) == set(jobs.__all__)
    for name, args in rows.items():
        parameters = inspect.signature(getattr(jobs, name)).parameters.values()
        code = [
            f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
            for p in parameters
            if p.kind is not p.VAR_POSITIONAL
        ]
        readme = re.findall(r"(?:^|, )(\*\*[a-z_]+|[a-z_]+)(?==|,|$)", args)
        assert readme == code, f"README's {name}({args}) against the code's {code}"
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters), name
