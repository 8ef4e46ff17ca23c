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
        assert table[name] == "0.05 (SQLite), 0.5 (PostgreSQL)"
        return
    assert matches(table[name], default), f"README says {table[name]!r}, the code {default!r}"


def test_the_check_catches_a_wrong_default():
    assert not matches("50", 100) and not matches("`7d`", parse_age("30d"))
    assert not matches("`jobs.api.permissions.Other`", ["jobs.api.permissions.ModelPermissions"])
    assert matches("DRF's `JSONRenderer`", ["rest_framework.renderers.JSONRenderer"])


# -- the endpoint table -----------------------------------------------------------------------

ENDPOINT = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^` ]*)` \|", re.M)


def documented_endpoints() -> set[tuple[str, str]]:
    return set(ENDPOINT.findall(README.read_text()))


def schema_endpoints() -> set[tuple[str, str]]:
    """Each (method, path) of the OpenAPI schema the service publishes, slashes trimmed."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path.rstrip("/"))
        for path, operations in schema["paths"].items()
        for method in operations
    }


def test_the_endpoint_table_lists_every_api_operation_and_nothing_else():
    api = {(m, p) for m, p in documented_endpoints() if p.startswith("/api/")}
    api.discard(("GET", "/api/schema"))  # the schema itself is not in the schema
    schema = {(m, p.replace("{pk}", "{id}")) for m, p in schema_endpoints()}
    tasks = {(m, p.replace("{id}", "{name}")) for m, p in schema if p.startswith("/api/tasks/")}
    schema = {e for e in schema if not e[1].startswith("/api/tasks/")} | tasks
    assert api - schema == set(), "in the README but not served"
    assert schema - api == set(), "served but missing from the README's endpoint table"


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


def test_the_endpoint_check_catches_a_wrong_row():
    assert ("GET", "/api/jobs/{id}") in documented_endpoints()
    assert ("POST", "/api/jobs/{id}/archive") not in schema_endpoints()


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


def test_the_option_check_catches_a_missing_option():
    assert "--batch-size" in command_options("purgejobs")
    assert "--batch-size" not in documented_options("`runworker` options: ")


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
