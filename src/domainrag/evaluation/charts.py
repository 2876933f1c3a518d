"""Bar charts of evaluation metrics (matplotlib PNGs for the HTML report).

The data going into a chart (:func:`chart_data`) is kept apart from the drawing so it can be checked
without looking at pixels: the y-axis starts near the data (0.92 against 0.97 is invisible on a 0 to 1
axis) and says where it starts; a value that was not measured stays ``None`` and is drawn as a hatched,
labelled column, never as a bar of height 0.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NOT_MEASURED = "not measured"


@dataclass
class BarChart:
    """One group of bars per metric, one bar per run; ``values[run][metric]`` is None when not measured."""

    title: str
    metrics: list[str]
    runs: list[str]
    values: list[list[float | None]]
    ylim: tuple[float, float]

    @property
    def ylabel(self) -> str:
        return "score" if self.ylim[0] == 0 else f"score (axis starts at {self.ylim[0]:.2f}, not 0)"


def y_limits(values: Sequence[float | None]) -> tuple[float, float]:
    """An axis range close around the measured values: the bottom on a 0.05 step below the smallest value
    (0 when that is near 0), the top a margin above the largest (room for the value labels)."""
    measured = [v for v in values if v is not None and math.isfinite(v)]
    if not measured:
        return 0.0, 1.0
    lo, hi = min(measured), max(measured)
    margin = max((hi - lo) * 0.3, 0.02)
    bottom = math.floor(round((lo - margin) * 20, 6)) / 20
    bottom = 0.0 if bottom <= 0.1 else bottom
    return bottom, max(hi + margin, bottom + 0.05)


def chart_data(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str], title: str) -> BarChart:
    """What a chart shows, from the runs of a result (label and metrics of each)."""
    values = [[run["metrics"].get(m) for m in metrics] for run in runs]
    return BarChart(title, list(metrics), [str(r["label"]) for r in runs], values,
                    y_limits([v for row in values for v in row]))


def draw(chart: BarChart) -> Any:
    """The matplotlib figure of a chart (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bottom, top = chart.ylim
    width = 0.8 / max(len(chart.runs), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(chart.metrics) + 2), 3.8), dpi=100)
    for i, (label, row) in enumerate(zip(chart.runs, chart.values, strict=True)):
        xs = [j + (i - (len(chart.runs) - 1) / 2) * width for j in range(len(chart.metrics))]
        measured = [(x, v) for x, v in zip(xs, row, strict=True) if v is not None]
        color = f"C{i % 10}"
        if measured:
            bars = ax.bar([x for x, _ in measured], [v for _, v in measured], width, label=label, color=color)
            ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in measured], fontsize=7, padding=1)
        else:
            ax.bar([], [], width, label=label, color=color)  # still in the legend
        for x, v in zip(xs, row, strict=True):
            if v is None:
                ax.bar(x, top - bottom, width, bottom=bottom, fill=False, hatch="//", edgecolor=color, linewidth=0.5,
                       gid=NOT_MEASURED)
                ax.text(x, bottom + (top - bottom) / 2, NOT_MEASURED, rotation=90, ha="center", va="center",
                        fontsize=7, color="0.3", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_xticks(range(len(chart.metrics)), chart.metrics, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(bottom, top)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    ax.set_xlabel("metric", fontsize=8)
    ax.set_title(chart.title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def bar_chart(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str], title: str) -> str:
    """Grouped bar chart as a base64 PNG."""
    fig = draw(chart_data(runs, metrics, title))
    import matplotlib.pyplot as plt  # after draw() chose the Agg backend

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
