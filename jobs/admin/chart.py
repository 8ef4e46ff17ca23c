"""The dashboard's chart: jobs finished per minute over the last hour, as server-side SVG.

One burst minute must not flatten the rest. When the highest minute is more than
``BURST`` times the 90th percentile, the axis stops at a round number above that
percentile and the minutes beyond it are drawn cut at the top, their value written
above them. The y axis has ticks at round steps and says its unit; the same numbers
are offered as a table (``rows``) for screen readers and for copying.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# A minute this many times the 90th percentile is a burst: the axis is clipped below it.
BURST = 3
TICKS = 4
UNIT = "jobs/min"


@dataclass(frozen=True)
class Scale:
    top: int  # the axis' highest value
    step: int  # between ticks
    clipped: bool  # some minutes are higher than ``top``


def nice_step(value: float, ticks: int = TICKS) -> int:
    """A round step (1, 2 or 5 times a power of ten, at least 1) that splits ``value``
    into about ``ticks`` parts."""
    raw = max(value / ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def scale(totals: list[int]) -> Scale:
    """The axis for ``totals``: up to the peak, or clipped above the 90th percentile when
    the peak is a burst."""
    peak = max([*totals, 1])
    ordered = sorted(totals)
    p90 = ordered[int(0.9 * (len(ordered) - 1))] if ordered else 0
    clipped = p90 > 0 and peak > BURST * p90
    reach = p90 * 1.5 if clipped else peak
    step = nice_step(reach)
    return Scale(top=step * math.ceil(reach / step), step=step, clipped=clipped)


def minutes(now: datetime, count: int) -> list[datetime]:
    """The start of each of the last ``count`` minutes, oldest first, ending with now's."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=count - 1)
    return [start + timedelta(minutes=i) for i in range(count)]


def rows(done: list[int], failed: list[int], now: datetime) -> list[tuple[str, int, int]]:
    """The chart as a table: each minute (HH:MM in the site's zone), done, failed."""
    starts = minutes(now, len(done))
    return [
        (f"{timezone.localtime(at):%H:%M}", d, f)
        for at, d, f in zip(starts, done, failed, strict=True)
    ]


def svg(done: list[int], failed: list[int], *, width: int = 720, height: int = 220) -> SafeString:
    """Draw done (green) and failed (red) per minute as stacked bars."""
    pad, top, bottom = 48, 22, 24
    plot_h = height - top - bottom
    base = top + plot_h
    totals = [d + f for d, f in zip(done, failed, strict=True)]
    axis = scale(totals)
    bar_w = (width - pad) / len(totals)
    bars, marks = [], []
    for i, (d, f) in enumerate(zip(done, failed, strict=True)):
        x = pad + i * bar_w
        title = f"{len(totals) - i - 1} min ago: {d} done, {f} failed"
        done_h = plot_h * min(d, axis.top) / axis.top
        failed_h = plot_h * min(f, axis.top - min(d, axis.top)) / axis.top
        for y, h, kind in (
            (base - done_h, done_h, "done"),
            (base - done_h - failed_h, failed_h, "failed"),
        ):
            if h > 0:
                bars.append((f"{x:.1f}", f"{y:.1f}", f"{bar_w - 1:.1f}", f"{h:.1f}", kind, title))
        if d + f > axis.top:
            marks.append(
                (f"{x:.1f}", top + 6, f"{bar_w - 1:.1f}", f"{x + bar_w / 2:.1f}", top - 4, d + f)
            )
    ticks = [
        (top + plot_h * (1 - value / axis.top), value)
        for value in range(0, axis.top + 1, axis.step)
    ]
    grid = format_html_join(
        "",
        '<line x1="{pad}" y1="{y}" x2="{w}" y2="{y}" class="grid"/>'
        '<text x="{tx}" y="{ty}" class="label">{v}</text>',
        (
            {"pad": pad, "w": width, "y": f"{y:.1f}", "tx": pad - 4, "ty": f"{y + 3:.1f}", "v": v}
            for y, v in ticks
        ),
    )
    rects = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" class="bar-{}"><title>{}</title></rect>',
        bars,
    )
    # A cut bar: a white break across its top, and its real value above it.
    cuts = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="3" class="cut"/>'
        '<text x="{}" y="{}" class="label peak">{}</text>',
        marks,
    )
    return format_html(
        '<svg class="jobs-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="Jobs finished per minute over the last hour; the table below has the '
        'numbers">{grid}'
        '<text x="4" y="12" class="label start unit">{unit}</text>'
        '<line x1="{pad}" y1="{base}" x2="{w}" y2="{base}" class="axis"/>'
        '<line x1="{pad}" y1="{top}" x2="{pad}" y2="{base}" class="axis"/>'
        '<text x="{pad}" y="{bottom}" class="label start">-60 min</text>'
        '<text x="{mid}" y="{bottom}" class="label middle">-30 min</text>'
        '<text x="{w}" y="{bottom}" class="label end">now</text>{rects}{cuts}</svg>',
        w=width,
        h=height,
        pad=pad,
        top=top,
        base=base,
        mid=pad + (width - pad) / 2,
        bottom=height - 6,
        unit=UNIT,
        grid=grid,
        rects=rects,
        cuts=cuts,
    )
