"""Every measured figure the README quotes is in a committed report under docs/.

The README marks the passages that quote measurements with HTML comments, invisible
once rendered: ``<!-- figures: docs/a.md docs/b.md -->`` opens one and names the reports
its figures come from, ``<!-- /figures -->`` closes it. Inside a passage:

- a figure is a number as written (``7,761``, ``0.963``, ``122``; each end of a range
  ``7,158-7,335`` is one), compared by value (``7,761`` == ``7761``, ``214.0`` == ``214``)
  with the numbers of the named reports, tokenised the same way, so ``1`` never matches
  inside ``1,000,000`` and ``95`` not inside ``p95``;
- a table row's figures must be in one row of a report's table with the same first cell;
- not figures: numbers in code spans and link targets, and the labels in ``LABELS``
  (``PostgreSQL 15``, ``2-core``, ``issue #3``).

Outside the passages no number may carry a unit that only a measurement gives
(``jobs/s``, ``requests/s``, ``jobs a second``, ``MB``, a decimal ratio ``0.96 x``): a new
figure has to be marked and traced. The test reads files only; it runs no benchmark.
"""

import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPEN = re.compile(r"<!-- figures: ([^>]*?) -->")
CLOSE = "<!-- /figures -->"
NUMBER = re.compile(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?(?![\d,]*\d)")
LABELS = re.compile(r"PostgreSQL \d+|\d+-core|#\d+")
CODE = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
UNMARKED = re.compile(
    r"\d[\d,.]*\s*(?:[-\u2013]\s*\d[\d,.]*\s*)?"
    r"(?:jobs/s|requests/s|req/s|(?:[\w-]+ )?jobs a second|requests a second|MB\b)"
    r"|\d+\.\d+\s*x\b"
)


def numbers(text: str) -> list[Decimal]:
    """The figures in ``text``: every number outside code, link targets and labels."""
    text = LABELS.sub(" ", LINK_TARGET.sub("]", CODE.sub(" ", text)))
    return [Decimal(token.replace(",", "")) for token in NUMBER.findall(text)]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def is_row(line: str) -> bool:
    return line.lstrip().startswith("|") and not re.fullmatch(r"\s*\|[-|: ]*\|\s*", line)


def passages(readme: str) -> list[tuple[int, list[str], str]]:
    """Each marked passage: its line number, the reports it names and its text."""
    found = []
    for match in OPEN.finditer(readme):
        end = readme.find(CLOSE, match.end())
        assert end != -1, f"README line {readme.count(chr(10), 0, match.start()) + 1}: unclosed"
        nested = OPEN.search(readme, match.end(), end)
        line = readme.count("\n", 0, match.start()) + 1
        assert nested is None, f"README line {line}: a passage opens inside another"
        found.append((line, match.group(1).split(), readme[match.end() : end]))
    return found


README_TEXT = README.read_text()
PASSAGES = passages(README_TEXT)


def report_text(path: str) -> str:
    file = ROOT / path
    assert path.startswith("docs/") and path.endswith(".md"), f"{path}: not a report under docs/"
    assert file.name != "README.md", f"{path}: a description, not a report"
    assert file.is_file(), f"{path}: no such report"
    return file.read_text()


def unsourced(passage: str, reports: list[str]) -> list[str]:
    """The figures of ``passage`` that none of ``reports`` contains, as readable lines."""
    texts = [report_text(path) for path in reports]
    known = {number for text in texts for number in numbers(text)}
    rows = [cells(line) for text in texts for line in text.splitlines() if is_row(line)]
    missing = []
    for line in passage.splitlines():
        if is_row(line):
            label, *values = cells(line)
            wanted = numbers(" ".join(values))
            candidates = [numbers(" ".join(row[1:])) for row in rows if row[0] == label]
            if not any(all(n in found for n in wanted) for found in candidates):
                missing.append(f"table row {label!r}: {line.strip()}")
        else:
            missing += [f"{n} in: {line.strip()}" for n in numbers(line) if n not in known]
    return missing


@pytest.mark.parametrize(
    ("line", "reports", "passage"), PASSAGES, ids=[f"line{p[0]}" for p in PASSAGES]
)
def test_each_marked_figure_is_in_a_report_it_names(line, reports, passage):
    assert reports, f"README line {line}: the passage names no report"
    assert numbers(passage), f"README line {line}: a marked passage without figures"
    missing = unsourced(passage, reports)
    assert not missing, (
        f"README line {line}: figures in none of {', '.join(reports)}:\n  " + "\n  ".join(missing)
    )


def test_the_readme_marks_its_measured_passages():
    assert len(PASSAGES) >= 5  # throughput, memory and ratios; admin; purge; stats


def test_no_measured_figure_outside_a_marked_passage():
    text = re.sub(r"(?ms)^```.*?^```", "", README_TEXT)  # commands and code, not claims
    for match in reversed(list(OPEN.finditer(text))):
        text = text[: match.start()] + text[text.find(CLOSE, match.end()) :]
    stray = UNMARKED.findall(CODE.sub(" ", text))
    assert not stray, f"measured figures outside a <!-- figures: ... --> passage: {stray}"


def test_figures_are_matched_as_whole_numbers():
    assert numbers("1,000,000 jobs, p95 12 ms, 7,158-7,335, 0.5-1.2 s, 1.5-2x") == [
        Decimal(n) for n in ("1000000", "12", "7158", "7335", "0.5", "1.2", "1.5", "2")
    ]
    assert numbers("`--batch 100` on PostgreSQL 15, a 2-core machine, issue #3") == []
    assert unsourced("drains 7,761 a second", ["docs/runs/bench-2026-11-30-8ac68dc.md"]) == []
    assert unsourced("drains 7,762 a second", ["docs/runs/bench-2026-11-30-8ac68dc.md"]) == [
        "7762 in: drains 7,762 a second"
    ]
