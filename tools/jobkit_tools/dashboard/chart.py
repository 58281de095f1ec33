"""The activity chart's geometry: stacked bars of succeeded, retried and failed jobs per bucket,
drawn as inline SVG by the template (no chart library: a few rectangles and labels)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC

from jobkit.activity import ActivitySeries

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 22  # room for the axis labels
OUTCOMES = ("succeeded", "retried", "failed")  # bottom to top


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    outcome: str
    title: str  # the tooltip


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    labels: list[Label]
    gridlines: list[float]  # y of each horizontal line
    totals: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())


def nice_top(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (at least 1)."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def build(series: ActivitySeries, title: str) -> Chart:
    """The chart of one series; bucket times on the x axis in UTC (HH:MM)."""
    count = max(len(series.buckets), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / count
    top = nice_top(max((b.succeeded + b.retried + b.failed for b in series.buckets), default=0))
    bars: list[Bar] = []
    labels = [
        Label(LEFT - 4, TOP + 4, str(top), "end"),
        Label(LEFT - 4, TOP + plot_h, "0", "end"),
    ]
    for index, bucket in enumerate(series.buckets):
        x = LEFT + index * slot
        base = float(TOP + plot_h)
        when = f"{bucket.start.astimezone(UTC):%H:%M}"
        for outcome in OUTCOMES:
            value = int(getattr(bucket, outcome))
            if not value:
                continue
            height = plot_h * value / top
            base -= height
            tooltip = f"{when} UTC: {value} {outcome}"
            bars.append(Bar(x + slot * 0.12, base, slot * 0.76, height, outcome, tooltip))
        if index % max(count // 6, 1) == 0:
            labels.append(Label(x + slot / 2, HEIGHT - 6, when))
    totals = {outcome: series.total(outcome) for outcome in OUTCOMES}
    gridlines = [TOP, TOP + plot_h / 2, TOP + plot_h]
    return Chart(title, bars, labels, gridlines, totals)
