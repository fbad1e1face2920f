"""The monitoring report of one model version: each limited value over the days, its limit,
and a table of every breach, as one self-contained HTML page.

Drawn from the lake's monitoring table (`scoring.read_monitoring`) and logged to the
version's training run as `monitoring/report.html`, next to `evaluation/report.html`, so
the page a reviewer opens for a version shows how it has behaved since. Figures use
matplotlib's object API (no pyplot state), as `report.py` does.
"""

from __future__ import annotations

import base64
import html
import io
import math

import pandas as pd
from matplotlib.figure import Figure

from pipelines.report import _table

COLUMNS = 3


def limited(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of values that have a limit, in day order."""
    rows = table[table["limit"].notna()]
    return rows.sort_values(["feature", "metric", "day"], kind="stable")


def figure(table: pd.DataFrame) -> Figure:
    """One panel per limited value: the value each day, the limit dashed, breaches red."""
    rows = limited(table)
    series = list(rows.groupby(["feature", "metric"], sort=False))
    lines = max(1, math.ceil(len(series) / COLUMNS))
    fig = Figure(figsize=(4 * COLUMNS, 2.6 * lines), layout="constrained")
    for index, ((feature, metric), part) in enumerate(series):
        axes = fig.add_subplot(lines, COLUMNS, index + 1)
        days = pd.to_datetime(part["day"])
        axes.plot(days, part["value"], marker="o", color="#1f77b4")
        axes.axhline(part["limit"].iloc[-1], linestyle="--", color="#c0392b")
        broken = part[part["breached"]]
        axes.scatter(pd.to_datetime(broken["day"]), broken["value"], color="#c0392b", zorder=3)
        axes.set_title(f"{feature}: {metric}", fontsize=9)
        axes.tick_params(labelsize=7)
    return fig


def html_page(model_name: str, version: str, table: pd.DataFrame) -> str:
    """The page: days covered, the breaches table, then the panels."""
    buffer = io.BytesIO()
    figure(table).savefig(buffer, format="png", dpi=80)
    image = base64.b64encode(buffer.getvalue()).decode()
    breaches = table[table["breached"]].sort_values(["day", "feature", "metric"])
    days = sorted(table["day"].unique())
    span = f"{days[0]} to {days[-1]} ({len(days)} days)" if days else "no days yet"
    title = f"{model_name} version {version}: monitoring"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
font-size:13px}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Scored days {html.escape(span)}; {len(breaches)} values beyond their limits
(spec <code>monitoring:</code>).</p>
<h2>Breaches</h2>
{_table(breaches.to_dict(orient="records"), ["day", "feature", "metric", "value", "limit"])}
<h2>Values over time against their limits</h2>
<img alt="monitored values" src="data:image/png;base64,{image}">
</body></html>"""
