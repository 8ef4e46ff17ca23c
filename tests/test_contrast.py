"""Every badge's text is readable: WCAG 2 contrast of at least 4.5:1 (AA for small text),
computed from the colours in the admin's stylesheet."""

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parent.parent / "jobs" / "static" / "jobs" / "admin.css"
AA = 4.5


def rules() -> dict[str, str]:
    """Selector -> declarations, for the stylesheet's simple rules."""
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    return {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", text)}


def colour(body: str, prop: str) -> str | None:
    found = re.search(rf"(?:^|;|\s){prop}\s*:\s*(#[0-9a-fA-F]{{3,6}})\b", body)
    return found.group(1) if found else None


def luminance(hex_colour: str) -> float:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted([luminance(a), luminance(b)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def badges() -> dict[str, tuple[str, str]]:
    """Each badge class -> (text colour, background), the base .job-badge filling gaps."""
    found = rules()
    base = found[".job-badge"]
    text, background = colour(base, "color"), colour(base, "background")
    out = {".job-badge": (text, background)}
    for selector, body in found.items():
        if re.fullmatch(r"\.(status|worker|queue)-[a-z]+", selector):
            out[selector] = (
                colour(body, "color") or text,
                colour(body, "background") or background,
            )
    return out


def test_contrast_formula_matches_wcag_examples():
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_every_status_has_a_badge_colour():
    from jobs.models import Status

    assert {f".status-{s}" for s in Status.values} <= badges().keys()


@pytest.mark.parametrize("selector", sorted(badges()))
def test_badge_contrast_is_at_least_aa(selector):
    text, background = badges()[selector]
    ratio = contrast(text, background)
    assert ratio >= AA, f"{selector}: {text} on {background} is {ratio:.2f}:1"
