"""The README's configuration table against the code: every default it states is the one
``jobs.conf`` returns, and every setting ``jobs.conf`` reads is in the table."""

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
    if value in ("", []):
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
