"""reports/index.html: the nightly history as one self-contained page (inline CSS and SVG, no JavaScript).

A view of history.sqlite; every `harness nightly` writes it (record/history.py names the file). Per scenario x
board x output: a trend chart of max abs (log scale) and one of its labels
(argmax agreement of class logits, mask IoU of a probability map) over the
nights, a pass/fail mark per night that links to that night's report.html,
and the last night's news first: regressions and new failures, then what
still fails, then what was fixed, then the rest.
"""

import html
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..record.history import (ERROR_FLOOR, TREND_METRICS, History, Key, NightDiff, last_value, regressions_text,
                              row_label_metric)
from ..record.numbers import LABEL_NAMES, format_metric

NIGHTS_SHOWN = 30
CHART_W, CHART_H = 420, 96

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ccd}
h3{font-size:14px;margin:0 0 6px;overflow-wrap:anywhere}
.dim{color:#6b7280} .pass{color:#137333} .fail{color:#c5221f} .warn{color:#a05a00}
.banner{padding:10px 14px;border-radius:6px;font-weight:700;margin:12px 0}
.banner.pass{background:#e6f4ea} .banner.fail{background:#fce8e6} .banner.warn{background:#fef7e0}
ul.news li{margin:3px 0;overflow-wrap:anywhere}
.cards{display:flex;flex-direction:column;gap:12px}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px}
.card.regression,.card.new-failure{border-left:5px solid #c5221f} .card.still-failing{border-left:5px solid #e8a33d}
.card.fixed{border-left:5px solid #137333}
.badge{font-size:12px;padding:1px 6px;border-radius:8px;margin-left:6px;font-weight:600}
.badge.regression,.badge.new-failure{background:#fce8e6;color:#c5221f} .badge.still-failing{background:#fef7e0;color:#a05a00}
.badge.fixed{background:#e6f4ea;color:#137333}
.charts{display:flex;gap:18px;flex-wrap:wrap}
.marks a,.marks span{display:inline-block;width:18px;text-align:center;text-decoration:none;font-weight:700}
svg text{font-family:system-ui,sans-serif;font-size:10px;fill:#1d2330}
"""
MARKS = {"pass": ("●", "pass"), "fail": ("✗", "fail"), "error": ("E", "fail"), "unusable": ("U", "warn"),
         None: ("·", "dim")}
ORDER = ("regression", "new-failure", "still-failing", "fixed", "")
"""A card's standing after the last night, in the order the page shows them."""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


@dataclass
class Card:
    key: Key
    row: dict
    standing: str
    """regression, new-failure, still-failing, fixed or ""."""
    news: List[str]


def standings(diff: Optional[NightDiff]) -> Dict[Key, Tuple[str, List[str]]]:
    """Each key's standing after the last night and the words that say why."""
    found: Dict[Key, Tuple[str, List[str]]] = {}
    if diff is None:
        return found
    for key in diff.fixed:
        found[key] = ("fixed", ["fixed"])
    for key, reason in diff.still_failing:
        found[key] = ("still-failing", [f"still failing: {reason}"])
    for key, reason in diff.new_failures:
        found[key] = ("new-failure", [f"new failure: {reason}"])
    by_key: Dict[Key, list] = {}
    for regression in diff.regressions:
        by_key.setdefault(regression.key, []).append(regression)
    for key, regressions in by_key.items():
        _, news = found.get(key, ("", []))
        news = [n for n in news if not n.startswith("fixed")] + [f"regression: {regressions_text(regressions)}"]
        found[key] = ("regression", news)
    return found


def trend_svg(values: List[Optional[float]], nights: List[int], metric: str, log: bool) -> str:
    """A line of one metric over the nights; every point carries its night and value as a tooltip."""
    present = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    title = LABEL_NAMES.get(metric, metric.replace("_", " "))
    if not present:
        return f'<svg width="{CHART_W}" height="{CHART_H}" role="img"><text x="4" y="14">{esc(title)}: no data</text></svg>'

    def scaled(v: float) -> float:
        return math.log10(max(v, ERROR_FLOOR)) if log else v

    low = min(scaled(v) for _, v in present)
    high = max(scaled(v) for _, v in present)
    if not log:  # agreement lives near 100%: show at least 99%..100%, more when it fell further
        low, high = min(low, 0.99), max(high, 1.0)
    if high - low < 1e-12:
        low, high = low - 1, high + 1
    left, right, top, bottom = 56, 10, 16, 14
    width, height = CHART_W - left - right, CHART_H - top - bottom
    step = width / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> Tuple[float, float]:
        return left + i * step, top + height * (1 - (scaled(v) - low) / (high - low))

    points = [xy(i, v) for i, v in present]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" role="img" '
             f'class="trend" data-metric="{esc(metric)}">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fff" stroke="#ccd"/>',
             f'<text x="{left}" y="11">{esc(title)}{" (log)" if log else ""}</text>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{esc(_axis(high, metric, log))}</text>',
             f'<text x="{left - 4}" y="{top + height}" text-anchor="end">{esc(_axis(low, metric, log))}</text>',
             '<polyline fill="none" stroke="#3b6fd4" stroke-width="1.5" points="'
             + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>']
    for (i, v), (x, y) in zip(present, points):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#3b6fd4"><title>night {nights[i]}: '
                     f'{esc(metric)} {esc(format_metric(v, metric, "text"))}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _axis(value: float, metric: str, log: bool) -> str:
    return f"1e{value:.0f}" if log else format_metric(value, metric, "text")


def marks(row: dict, run_ids: Dict[Tuple[int, str], Optional[str]], reports_dir: Path) -> str:
    """A mark per night (● pass, ✗ fail, E did not run, U unusable), each a link to that night's report.html."""
    shown = []
    reasons = row.get("reasons") or [None] * len(row["nights"])
    for night, status, reason in zip(row["nights"], row["status"], reasons):
        symbol, css = MARKS.get(status, ("?", "dim"))
        tip = f"night {night}: {status or 'not run'}" + (f": {reason}" if reason else "")
        run_id = run_ids.get((night, row["scenario"]))
        page = f"{run_id}/report.html" if run_id else None
        if page and (reports_dir / page).is_file():
            shown.append(f'<a class="{css}" href="{esc(page)}" title="{esc(tip)}">{symbol}</a>')
        else:
            shown.append(f'<span class="{css}" title="{esc(tip)}">{symbol}</span>')
    return f'<div class="marks">{"".join(shown)}</div>'


def render_dashboard(history: History, reports_dir: Path, diff: Optional[NightDiff] = None,
                     nights: int = NIGHTS_SHOWN) -> str:
    window = history.nights(nights)
    ids = [night["id"] for night in window]
    rows = history.trend(None, nights, TREND_METRICS)
    run_ids = history.run_ids(ids)
    if diff is None and ids:
        from ..record.history import RegressionPolicy

        diff = history.compare(ids[-1], RegressionPolicy())
    standing = standings(diff)
    cards = [Card((row["scenario"], row["board"], row["output"]), row, *standing.get(
        (row["scenario"], row["board"], row["output"]), ("", []))) for row in rows]
    cards.sort(key=lambda card: (ORDER.index(card.standing), card.key))

    last = window[-1] if window else None
    if last is None:
        banner = '<div class="banner warn">No night recorded yet.</div>'
    else:
        code = last["exit_code"]
        counts = (f"{len(diff.new_failures) if diff else 0} new failure(s), "
                  f"{len(diff.regressions) if diff else 0} regression(s), {len(diff.fixed) if diff else 0} fixed, "
                  f"{len(diff.still_failing) if diff else 0} still failing")
        label, css = {0: ("NIGHT OK", "warn" if diff and diff.regressions else "pass"),
                      1: ("NIGHT FAILED", "fail"), 2: ("CONFIG ERROR", "fail"),
                      3: ("BOARD ERROR", "fail")}.get(code, (f"exit {code}", "fail"))
        banner = (f'<div class="banner {css}" id="last-night">Night {esc(last["id"])} ({esc(last["started_at"])}): '
                  f"{label} [exit {esc(code)}]: {esc(counts)}</div>")
    news = [f'<li class="{"fail" if card.standing in ("regression", "new-failure") else "warn"}">'
            f'<b>{esc(" / ".join(card.key))}</b>: {esc("; ".join(card.news))}</li>'
            for card in cards if card.standing in ("regression", "new-failure", "still-failing")]
    sections = []
    for card in cards:
        label = row_label_metric(card.row)
        status = last_value(card.row["status"])
        badge = (f'<span class="badge {card.standing}">{esc(card.standing.replace("-", " "))}</span>'
                 if card.standing else "")
        latest = (f'max abs {format_metric(last_value(card.row["max_abs"]), "max_abs", "text")}'
                  + (f", {LABEL_NAMES[label]} {format_metric(last_value(card.row[label]), label, 'text')}"
                     if label else ""))
        charts = trend_svg(card.row["max_abs"], card.row["nights"], "max_abs", log=True)
        if label:
            charts += trend_svg(card.row[label], card.row["nights"], label, log=False)
        sections.append(
            f'<section class="card {card.standing}" data-key="{esc(" / ".join(card.key))}">'
            f'<h3>{esc(" / ".join(card.key))}{badge}</h3>'
            f'<p class="dim">now: <span class="{MARKS.get(status, ("", "dim"))[1]}">{esc(status or "–")}</span>; '
            f'last night: {esc(latest)}'
            + (f'<br>{esc("; ".join(card.news))}' if card.news else "") + "</p>"
            f'<div class="charts">{charts}</div>{marks(card.row, run_ids, reports_dir)}</section>')
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    span = f"{window[0]['started_at']} .. {window[-1]['started_at']}" if window else "–"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>mnn-harness nightly</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>mnn-harness nightly</h1><p class=dim>{len(window)} night(s), {esc(span)}; written {esc(generated)}. "
        "Marks per night: ● pass, ✗ fail, E did not run, U board unusable, · absent; each links to that "
        "night's report.html.</p>"
        f"{banner}"
        + (f'<h2>Last night first</h2><ul class="news" id="news">{"".join(news)}</ul>' if news else "")
        + f'<h2>Every scenario × board × output</h2><div class="cards" id="cards">{"".join(sections)}</div>'
        "</body></html>\n")
