"""The experiments dashboard: one HTML page per experiment, served by the feed service
(``GET /experiments/{name}``), drawn from its saved state with inline SVG (no script, no CDN).

It shows per arm the status table (impressions, clicks, CTR, α, β, P(best), expected loss, traffic
now), today's winner (the best CTR over today's batches) and the live winner (the highest P(best);
"decided" from 95%), and four charts: CTR per hourly batch, cumulative CTR, the Beta posterior
curves, and the traffic allocation over time. ``dashboard_data`` is the same content as JSON
(``GET /v1/experiments/{name}``). The page reloads itself every minute.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from feed.experiments import ExperimentState

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
DECIDED = 0.95
REFRESH_S = 60


def beta_pdf(x: float, a: float, b: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0
    log = (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return math.exp(log)


def dashboard_data(state: ExperimentState, points: int = 120) -> dict[str, Any]:
    """Everything the page draws, as plain data."""
    arms = sorted(state.arms)
    status = state.status()
    now = state.allocations[-1][1] if state.allocations else {}
    hourly: dict[str, list[tuple[str, float | None]]] = {a: [] for a in arms}
    cumulative: dict[str, list[tuple[str, float | None]]] = {a: [] for a in arms}
    today = state.log[-1]["at"][:10] if state.log else None
    totals = {a: [0, 0] for a in arms}
    day = {a: [0, 0] for a in arms}  # today's batches only (the day of the newest one)
    for entry in state.log:
        for a in arms:
            imp, clk = entry["counts"].get(a, [0, 0])
            totals[a][0] += imp
            totals[a][1] += clk
            if entry["at"][:10] == today:
                day[a][0] += imp
                day[a][1] += clk
            hourly[a].append((entry["at"], clk / imp if imp else None))
            cumulative[a].append((entry["at"], totals[a][1] / totals[a][0] if totals[a][0] else None))
    day_ctr = {a: day[a][1] / day[a][0] for a in arms if day[a][0]}
    todays_winner = max(day_ctr, key=lambda a: (day_ctr[a], a)) if day_ctr else None
    live = max(status, key=lambda r: (r["p_best"], r["arm"])) if status else None
    top = max((r["alpha"] / (r["alpha"] + r["beta"]) + 5 * math.sqrt(r["alpha"] * r["beta"] / ((r["alpha"] + r["beta"]) ** 2 * (r["alpha"] + r["beta"] + 1))) for r in status), default=1.0)
    hi = min(1.0, max(top, 0.01))
    xs = [hi * (k + 0.5) / points for k in range(points)]
    posterior = {r["arm"]: [(x, beta_pdf(x, r["alpha"], r["beta"])) for x in xs] for r in status}
    allocation = {a: [(since, weights.get(a, 0.0)) for since, weights in state.allocations] for a in arms}
    return {
        "experiment": state.name,
        "arms": arms,
        "batches": len(state.batches),
        "status": [{**r, "traffic": now.get(r["arm"], 0.0)} for r in status],
        "todays_winner": todays_winner,
        "today": today,
        "live_winner": live["arm"] if live else None,
        "live_p_best": live["p_best"] if live else None,
        "decided": bool(live and live["p_best"] >= DECIDED),
        "hourly_ctr": hourly,
        "cumulative_ctr": cumulative,
        "posterior": posterior,
        "allocation": allocation,
    }


def _chart(
    chart_id: str, title: str, series: dict[str, Sequence[tuple[float, float | None]]], x_labels: tuple[str, str], y_format: str, step: bool = False, y_max: float | None = None
) -> str:
    """A line chart of numeric (x, y) series (y None: a gap), with axes and a legend."""
    w, h, left, right, top, bottom = 640, 240, 56, 130, 28, 32
    pts = [(x, y) for s in series.values() for x, y in s if y is not None]
    x0, x1 = (min(p[0] for p in pts), max(p[0] for p in pts)) if pts else (0.0, 1.0)
    y1 = y_max / 1.05 if y_max is not None else max((p[1] for p in pts), default=1.0) or 1.0
    x1 = x1 if x1 > x0 else x0 + 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def sy(y: float) -> float:
        return h - bottom - y / (y1 * 1.05) * (h - top - bottom)

    out = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">']
    out.append(f'<text x="{left}" y="16" class="title">{html.escape(title)}</text>')
    for k in range(5):
        y = y1 * 1.05 * k / 4
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" class="tick">{format(y, y_format)}</text>')
    out.append(f'<text x="{left}" y="{h - 8}" class="tick">{html.escape(x_labels[0])}</text>')
    out.append(f'<text x="{w - right}" y="{h - 8}" text-anchor="end" class="tick">{html.escape(x_labels[1])}</text>')
    for k, (arm, points) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        runs: list[list[str]] = [[]]
        prev: float | None = None
        for x, y in points:
            if y is None:
                runs.append([])
                continue
            if step and prev is not None and runs[-1]:
                runs[-1].append(f"{sx(x):.1f},{sy(prev):.1f}")
            runs[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
            prev = y
        if step and prev is not None and runs[-1]:
            runs[-1].append(f"{w - right:.1f},{sy(prev):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}" class="series" data-arm="{html.escape(arm)}"/>')
            elif run:
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2" class="series" data-arm="{html.escape(arm)}"/>')
        ly = top + 14 + 18 * k
        out.append(f'<rect x="{w - right + 12}" y="{ly - 9}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{w - right + 30}" y="{ly + 1}" class="legend" data-arm="{html.escape(arm)}">{html.escape(arm)}</text>')
    out.append("</svg>")
    return "".join(out)


def _times(series: dict[str, list[tuple[str, Any]]]) -> tuple[dict[str, list[tuple[float, Any]]], tuple[str, str]]:
    """ISO-time x values as hours since the first one, and the first and last as axis labels."""
    stamps = sorted({t for s in series.values() for t, _ in s})
    if not stamps:
        return {a: [] for a in series}, ("", "")
    t0 = datetime.fromisoformat(stamps[0])
    conv = {a: [((datetime.fromisoformat(t) - t0).total_seconds() / 3600, y) for t, y in s] for a, s in series.items()}
    return conv, (f"{stamps[0][:16]}Z", f"{stamps[-1][:16]}Z")


def render_dashboard(state: ExperimentState, description: str = "") -> str:
    d = dashboard_data(state)
    name = html.escape(d["experiment"])
    rows = "".join(
        f'<tr data-arm="{html.escape(r["arm"])}"><td class="arm">{html.escape(r["arm"])}</td><td>{r["impressions"]:,}</td><td>{r["clicks"]:,}</td>'
        f'<td>{r["ctr"]:.2%}</td><td>{r["alpha"]:,}</td><td>{r["beta"]:,}</td><td>{r["p_best"]:.1%}</td><td>{r["expected_loss"]:.5f}</td><td>{r["traffic"]:.1%}</td></tr>'
        for r in d["status"]
    )
    live = d["live_winner"]
    live_text = f"{html.escape(live)} (P(best) {d['live_p_best']:.1%}{', decided' if d['decided'] else ', not decided yet'})" if live else "none yet"
    today = html.escape(d["todays_winner"]) if d["todays_winner"] else "none yet"
    hourly, hx = _times(d["hourly_ctr"])
    cumulative, cx = _times(d["cumulative_ctr"])
    allocation, ax = _times(d["allocation"])
    charts = [
        _chart("hourly-ctr", "CTR per hourly batch", hourly, hx, ".1%"),
        _chart("cumulative-ctr", "Cumulative CTR", cumulative, cx, ".1%"),
        _chart("posterior", "Posterior of each arm's CTR: Beta(α, β)", d["posterior"], ("0", f"{max((x for s in d['posterior'].values() for x, _ in s), default=1):.1%}"), ".0f"),
        _chart("allocation", "Traffic allocation over time", allocation, ax, ".0%", step=True, y_max=1.0),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_S}">
<title>Experiment {name} · topicfeed</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td.arm, th.arm {{ text-align: left; }} .winners span {{ font-weight: 600; }}
.chart {{ display: block; margin: 12px 0; }} .grid {{ stroke: #eee; }} .tick, .legend {{ font-size: 11px; fill: #555; }} .title {{ font-size: 13px; font-weight: 600; }}
</style></head>
<body>
<h1>Experiment <span id="experiment-name">{name}</span></h1>
<p>{html.escape(description)} {d["batches"]} hourly batches applied.</p>
<p class="winners">Today's winner ({html.escape(d["today"] or "no batch yet")}): <span id="todays-winner">{today}</span> · Live winner: <span id="live-winner">{live_text}</span></p>
<table id="arms"><thead><tr><th class="arm">arm</th><th>impressions</th><th>clicks</th><th>CTR</th><th>α</th><th>β</th><th>P(best)</th><th>expected loss</th><th>traffic now</th></tr></thead>
<tbody>{rows}</tbody></table>
{"".join(charts)}
</body></html>
"""
