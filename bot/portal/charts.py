"""The geometry of the portal's inline SVG charts; the templates draw what this computes.

No chart library and no JavaScript: a few rectangles, polylines and text elements, with a
table of the same figures beside each chart for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

WIDTH = 560
HEIGHT = 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 12, 28


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    ticks: list[Tick]
    x_labels: list[tuple[float, str]]
    bars: list[Bar] = field(default_factory=list)
    points: str = ""  # a polyline's points
    dots: list[tuple[float, float, str]] = field(default_factory=list)


def _scale_top(maximum: float) -> float:
    """A round axis top at or above `maximum`."""
    if maximum <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 15, 20, 25, 30, 60, 120, 240, 480, 720, 1440, 2880, 10080):
        if maximum <= step:
            return float(step)
    return float(int(maximum) + 1)


def _ticks(top: float, plot_height: float, count: int = 4, unit: str = "") -> list[Tick]:
    return [Tick(PAD_TOP + plot_height - plot_height * i / count,
                 f"{top * i / count:g}{unit}") for i in range(count + 1)]


def score_line(scores: Sequence[tuple[str, int]]) -> Chart:
    """A risk's score (1 to 25) after each assessment, left to right."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(1, len(scores) - 1)
    dots = []
    for index, (label, score) in enumerate(scores):
        x = PAD_LEFT + (index * step if len(scores) > 1 else plot_w / 2)
        y = PAD_TOP + plot_h - plot_h * score / 25
        dots.append((round(x, 1), round(y, 1), f"{label}: {score}"))
    every = max(1, len(scores) // 6)
    x_labels = [(x, label.split(":")[0]) for index, ((x, _, label)) in enumerate(dots)
                if index % every == 0]
    return Chart(WIDTH, HEIGHT, _ticks(25, plot_h), x_labels,
                 points=" ".join(f"{x},{y}" for x, y, _ in dots), dots=dots)


def month_bars(months: Sequence[Any]) -> Chart:
    """Grouped bars of MTTA and MTTR (minutes) per month."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    values = [v for m in months for v in (m.mtta_minutes, m.mttr_minutes) if v is not None]
    top = _scale_top(max(values, default=0))
    slot = plot_w / max(1, len(months))
    bar_w = max(2.0, slot / 2 - 4)
    bars: list[Bar] = []
    for index, month in enumerate(months):
        for offset, (series, value) in enumerate((("mtta", month.mtta_minutes),
                                                  ("mttr", month.mttr_minutes))):
            if value is None:
                continue
            height = plot_h * min(value, top) / top
            x = PAD_LEFT + index * slot + 2 + offset * (bar_w + 2)
            bars.append(Bar(round(x, 1), round(PAD_TOP + plot_h - height, 1), round(bar_w, 1),
                            round(height, 1), series,
                            f"{month.month} {series.upper()} {value:.0f} min"))
    x_labels = [(PAD_LEFT + index * slot + slot / 2, month.month[2:])
                for index, month in enumerate(months)]
    return Chart(WIDTH, HEIGHT, _ticks(top, plot_h, unit="m"), x_labels, bars=bars)


@dataclass(frozen=True)
class Node:
    key: str
    x: float
    y: float
    title: str
    subtitle: str
    href: str | None


@dataclass(frozen=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    columns: list[tuple[float, str]]
    nodes: list[Node]
    edges: list[Edge]


NODE_W, NODE_H, COLUMN_GAP, ROW_GAP = 150, 46, 40, 14


def lineage(stages: Sequence[tuple[str, list[tuple[str, str, str, str | None]]]],
            links: dict[str, set[str]] | None = None) -> Diagram:
    """Boxes in columns (one per stage: hypotheses, decisions, gates, promotions, incidents),
    each box `(key, title, subtitle, href)`; an edge joins each box to those of the next
    non-empty stage (or, where `links[key]` is known, only to the boxes it names)."""
    links = links or {}
    nodes: list[Node] = []
    columns: list[tuple[float, str]] = []
    placed: list[list[Node]] = []
    tallest = 1
    for index, (name, boxes) in enumerate(stages):
        x = 10 + index * (NODE_W + COLUMN_GAP)
        columns.append((x + NODE_W / 2, name))
        column = [Node(key, x, 34 + row * (NODE_H + ROW_GAP), title, subtitle, href)
                  for row, (key, title, subtitle, href) in enumerate(boxes)]
        nodes += column
        placed.append(column)
        tallest = max(tallest, len(column))
    edges: list[Edge] = []
    filled = [column for column in placed if column]
    for left, right in pairwise(filled):
        for a in left:
            for b in right:
                known = links.get(b.key)
                if known is not None and a.key not in known:
                    continue
                edges.append(Edge(a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2))
    width = 20 + len(stages) * NODE_W + (len(stages) - 1) * COLUMN_GAP
    height = 44 + tallest * (NODE_H + ROW_GAP)
    return Diagram(width, height, columns, nodes, edges)
