"""report.html: one self-contained page per run (inline CSS, PNGs as data URIs, SVG, no JavaScript).

A view of the RunReport, like the terminal report: the verdict table
(id="verdict-table"), each board's facts, and pictures. For class_logits
outputs, per board and sample: the input image (the preprocessing undone),
the reference's and the board's label maps (argmax over the class axis, a
fixed palette), and where they disagree: yellow a benign flip (the
reference's top-1 minus top-2 score is below the output's benign_margin, a
near-tie), red a hard flip. For every output, a histogram of |board - x86|
over log-spaced bins. For a stream (id="stream"), per board and output, line
charts over the steps: the max abs error (log scale) and, for an output with
one value per step, x86's and the board's values (with the decision threshold).
"""

import math
import statistics
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..analysis.compare import format_metric
from ..analysis.versions import versions_differ
from ..analysis.outcome import (ERROR, UNUSABLE, comparisons_of, labels_text, source_runtime, step_errors_text,
                                summary_text, verdicts, version_note)
from ..core.npz import load_tensor
from ..core.results import OK
from .decoded import decoded_section
from .pictures import MAX_SAMPLES_SHOWN, esc, img_tag, input_picture
from .terminal import FEATURES_SHOWN, GROWS, input_rows, model_line, settings_text, targets_text

AGREE_BGR = (70, 70, 70)
BENIGN_BGR = (0, 215, 255)
HARD_BGR = (40, 40, 230)
NONFINITE_BGR = (200, 0, 200)
"""Magenta: a position where the board's output holds NaN or Inf (in any class)."""

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ccd}
h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{padding:4px 10px;border-bottom:1px solid #e3e5ea;text-align:left;vertical-align:top}
th{background:#eef0f4;white-space:nowrap} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
li{overflow-wrap:anywhere}
.pass{color:#137333;font-weight:700} .fail{color:#c5221f;font-weight:700} .warn{color:#a05a00}
.dim{color:#6b7280} .banner{padding:10px 14px;border-radius:6px;font-weight:700;margin:12px 0}
.banner.pass{background:#e6f4ea} .banner.fail{background:#fce8e6}
.meta td:first-child{color:#6b7280}
.pics{display:flex;gap:14px;flex-wrap:wrap;margin:6px 0 14px}
figure{margin:0;text-align:center;font-size:12px}
figure img{image-rendering:pixelated;border:1px solid #ccd;background:#fff}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px -2px 12px;border:1px solid #999}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#1d2330}
"""


def palette(count: int) -> np.ndarray:
    """A fixed colour per class (BGR uint8): the same class has the same colour on every page."""
    base = [(75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245), (180, 30, 145),
            (240, 240, 70), (230, 50, 240), (60, 245, 210), (212, 190, 250), (128, 128, 0), (255, 190, 220),
            (40, 110, 170), (200, 250, 255), (0, 0, 128), (195, 255, 170), (0, 128, 128), (180, 215, 255),
            (128, 0, 0), (128, 128, 128)]
    colours = [base[i % len(base)] for i in range(count)]
    for i in range(len(base), count):  # past the named ones, a deterministic shift keeps them apart
        b, g, r = colours[i]
        shift = 37 * (i // len(base))
        colours[i] = ((b + shift) % 256, (g + 2 * shift) % 256, (r + 3 * shift) % 256)
    return np.array(colours, dtype=np.uint8)


def label_maps(target: np.ndarray, reference: np.ndarray, class_axis: int):
    """Per sample: the reference's and the target's top class, and the reference's top-1 minus top-2 margin.

    Arrays are [samples, ...one output]; class_axis counts in one output's shape.
    Returns three arrays shaped [samples, H, W] (size-1 axes squeezed), or None
    when the label maps are not 2-D pictures.
    """
    axis = class_axis + 1 if class_axis >= 0 else class_axis
    ref_labels = np.argmax(reference, axis=axis)
    own_labels = np.argmax(target, axis=axis)
    ordered = np.sort(reference, axis=axis)
    top = np.take(ordered, -1, axis=axis)
    second = np.take(ordered, -2, axis=axis) if reference.shape[axis] > 1 else top - np.inf
    margin = top - second
    shape = [ref_labels.shape[0]] + [d for d in ref_labels.shape[1:] if d != 1]
    if len(shape) == 2:
        shape = [shape[0], 1, shape[1]]
    if len(shape) != 3:
        return None
    return ref_labels.reshape(shape), own_labels.reshape(shape), margin.reshape(shape)


def disagreement_picture(ref_labels, own_labels, margin, benign_margin: float, nonfinite=None):
    """Grey where the labels agree, yellow a benign flip (near-tie), red a hard flip, magenta where the board's
    scores hold NaN/Inf (nonfinite: a mask of the label map's shape); and the counts of the three."""
    flipped = ref_labels != own_labels
    bad = np.zeros(ref_labels.shape, bool) if nonfinite is None else nonfinite
    benign = flipped & (margin < benign_margin) & ~bad
    hard = flipped & ~benign & ~bad
    picture = np.empty(ref_labels.shape + (3,), np.uint8)
    picture[:] = AGREE_BGR
    picture[benign] = BENIGN_BGR
    picture[hard] = HARD_BGR
    picture[bad] = NONFINITE_BGR
    return picture, int(benign.sum()), int(hard.sum()), int(bad.sum())


def histogram_svg(difference: np.ndarray, limit: Optional[float] = None, width: int = 560, height: int = 170) -> str:
    """|board - x86| over log-spaced bins (4 per decade), exact zeros apart; bar heights log-scaled."""
    values = np.abs(np.asarray(difference, dtype=np.float64)).ravel()
    zeros = int(np.count_nonzero(values == 0))
    nonzero = values[values > 0]
    if nonzero.size:
        low = math.floor(math.log10(nonzero.min()))
        high = max(math.ceil(math.log10(nonzero.max())), low + 1)
        edges = np.logspace(low, high, 4 * (high - low) + 1)
        counts, _ = np.histogram(nonzero, bins=edges)
    else:
        low, high, edges, counts = -1, 0, np.array([0.1, 1.0]), np.array([0])
    # The exact zeros, an empty slot, then the log-spaced bins.
    bars = [("exactly 0", zeros), ("", 0)] + [(f"{edges[i]:.1e} to {edges[i + 1]:.1e}", int(c))
                                              for i, c in enumerate(counts)]
    left, bottom, top_pad = 44, 26, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    bar_w = plot_w / len(bars)
    peak = math.log10(max(max(count for _, count in bars), 1) + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{left}" y="{top_pad}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccd"/>']
    for index, (label, count) in enumerate(bars):
        h = plot_h * math.log10(count + 1) / peak if count else 0
        x = left + index * bar_w
        if not label:
            continue
        colour = "#9aa3b2" if index == 0 else "#3b6fd4"
        parts.append(f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="{colour}"><title>{esc(label)}: {count}</title></rect>')
    for decade in range(low, high + 1):
        x = left + bar_w * (2 + 4 * (decade - low))
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">1e{decade}</text>')
    parts.append(f'<text x="{left + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle">0</text>')
    parts.append(f'<text x="4" y="{top_pad + 10}">count</text>'
                 f'<text x="4" y="{top_pad + 24}" class="dim">(log)</text>')
    if limit and limit > 0 and nonzero.size:
        position = (math.log10(limit) - low) / (high - low)
        if 0 <= position <= 1:
            x = left + bar_w * (2 + 4 * (high - low) * position)
            parts.append(f'<line x1="{x:.1f}" y1="{top_pad}" x2="{x:.1f}" y2="{top_pad + plot_h}" '
                         f'stroke="#c5221f" stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{top_pad + 12}" '
                         f'fill="#c5221f">max_abs limit</text>')
    parts.append("</svg>")
    return "".join(parts)


def verdict_table(summary: dict) -> str:
    """The verdicts as the terminal shows them (outcome.verdicts): the conversion check first, failures first."""
    rows = []
    for verdict in verdicts(summary):
        if verdict.status in (ERROR, UNUSABLE):
            rows.append(f'<tr><td>{esc(verdict.board)}</td><td>{esc(verdict.output)}</td>' + '<td></td>' * 5 +
                        f'<td class="fail">ERROR</td><td>{esc(verdict.reasons[0])}</td></tr>')
            continue
        m = verdict.metrics
        cause = f" {esc(verdict.cause)}" if verdict.cause else ""
        shown = '<td class="pass">PASS</td>' if verdict.passed else f'<td class="fail">FAIL{cause}</td>'
        rows.append(f"<tr><td>{esc(verdict.board)}</td><td>{esc(verdict.output)}</td>"
                    + "".join(f'<td class="num">{"–" if verdict.decoded else format_metric(m.get(metric), metric)}'
                              '</td>' for metric in ("max_abs", "mean_abs", "max_rel", "cosine"))
                    + f'<td class="num">{esc(labels_text(summary, verdict))}</td>'
                    f"{shown}<td>{esc('; '.join(verdict.reasons + verdict.notes))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Board", "Output", "max abs", "mean abs", "max rel", "cosine",
                                              "labels", "Verdict", "Reasons"))
    return (f'<table id="verdict-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class=dim>labels: argmax agreement for class_logits outputs, mask IoU at the threshold for '
            'probability_map outputs, decisions that agree for decision outputs; for a decoded output, what the '
            'application sees (boxes matched, texts read exactly, top classes, points within PCK).</p>')


def boards_table(summary: dict) -> str:
    reference = summary.get("reference")
    reference_mnn = (summary["boards"].get(reference, {}).get("facts") or {}).get("mnn_version")
    rows = []
    for name, board in summary.get("boards", {}).items():
        facts = board.get("facts") or {}
        features = [f for f in FEATURES_SHOWN if f in (facts.get("cpu_features") or [])]
        latency = facts.get("latency_ms") or []
        rss = facts.get("peak_rss_mb")
        mnn = facts.get("mnn_version") or "?"
        mnn_class = "warn" if versions_differ(facts.get("mnn_version"), reference_mnn) else ""
        status_class = "pass" if board.get("status") == OK else "fail"
        rows.append(
            f"<tr><td>{esc(name)}{' <span class=dim>(ref)</span>' if name == reference else ''}</td>"
            f"<td>{esc(board.get('kind', '?'))}"
            f"{esc(' via ' + ', '.join(board['via'])) if board.get('via') else ''}</td>"
            f"<td class={status_class}>{esc(board.get('status'))}</td>"
            f"<td>{esc(facts.get('machine', '?'))}</td><td class='{mnn_class}'>{esc(mnn)}</td>"
            f"<td>{esc(facts.get('python', '?'))}</td><td>{esc(' '.join(features) or '–')}</td>"
            f"<td class=num>{f'{statistics.median(latency):.1f} ms' if latency else '–'}</td>"
            f"<td class=num>{f'{rss:.0f} MB' if rss else '–'}</td>"
            f"<td class=num>{sum((board.get('timings') or {}).values()):.1f} s</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Board", "Kind", "Status", "Machine", "MNN", "Python",
                                              "CPU features", "Latency", "Peak RSS", "Wall"))
    notes = []
    for name, board in summary.get("boards", {}).items():
        facts = board.get("facts") or {}
        if board.get("error"):
            notes.append(f'<li class="fail">{esc(name)}: {esc(board["error"])}</li>')
        version = version_note(summary, name)
        if version:
            notes.append(f'<li class="warn">{esc(name)}: {esc(version)}</li>')
        for note in board.get("notes") or []:
            notes.append(f'<li class="warn">{esc(name)}: {esc(note)}</li>')
        if facts.get("mnn_banner"):
            notes.append(f'<li class="dim">{esc(name)}: MNN says “{esc(facts["mnn_banner"])}”</li>')
        if facts.get("api_reason"):
            notes.append(f'<li class="dim">{esc(name)}: {esc(facts["api_reason"])}</li>')
        backend = facts.get("backend") or {}
        if backend.get("asked") not in (None, "cpu"):
            failure = (summary.get("backend_failures") or {}).get(name)
            shown = failure or f"asked {backend.get('asked')}, ran {backend.get('ran')} ({backend.get('evidence')})"
            css = "fail" if failure else ("warn" if backend.get("ran") != backend.get("asked") else "dim")
            notes.append(f'<li class="{css}">{esc(name)}: {esc(shown)}</li>')
    for note in (summary.get("source") or {}).get("notes") or []:
        notes.append(f'<li class="warn">{esc(source_runtime(summary))}: {esc(note)}</li>')
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<ul>{''.join(notes)}</ul>")


def pictures(report, summary: dict) -> str:
    """The per-output sections: label maps and disagreement for class_logits, error histograms for all."""
    scenario = report.scenario
    reference = report.results.get(report.reference)
    if reference is None or not reference.ok:
        return "<p class=dim>No pictures: the reference produced no outputs.</p>"
    inputs = None
    image_input = getattr(report.inputs, "image_input", None)  # no picture of an input that is not an image
    if image_input and Path(report.inputs.path).exists():
        inputs = load_tensor(report.inputs.path, image_input)
    sections: List[str] = []
    for output in summary.get("model", {}).get("outputs") or list(reference.outputs):
        spec = scenario.output_spec(output)
        limit = spec.tolerance.max_abs
        sections.append(f"<h2>Output {esc(output)} <span class=dim>({esc(spec.kind)})</span></h2>")
        ref_values = reference.outputs.get(output)
        for board in report.compared_targets:
            result = report.results[board]
            values = result.outputs.get(output) if result.ok else None
            sections.append(f"<h3>{esc(board)} against {esc(report.reference)}</h3>")
            if values is None or ref_values is None or values.shape != ref_values.shape:
                sections.append("<p class=dim>Nothing to draw: no comparable output from this board.</p>")
                continue
            difference = values.astype(np.float64) - ref_values.astype(np.float64)
            finite = np.isfinite(difference)
            left_out = (f", {difference.size - int(finite.sum())} of them NaN/Inf on either side and left out"
                        if not finite.all() else "")
            sections.append(f"<p class=dim>|{esc(board)} − {esc(report.reference)}| per element, "
                            f"{values.size} elements{esc(left_out)}</p>")
            sections.append(histogram_svg(difference[finite], limit) if finite.any()
                            else "<p class=dim>No difference to draw: no element is finite on both sides.</p>")
            if spec.kind != "class_logits":
                continue
            axis = spec.class_axis + 1 if spec.class_axis >= 0 else spec.class_axis
            nonfinite = ~np.isfinite(np.asarray(values, dtype=np.float64)).all(axis=axis)
            maps = label_maps(values, ref_values, spec.class_axis)
            if maps is None:
                sections.append("<p class=dim>The label maps are not 2-D; no pictures.</p>")
                continue
            ref_labels, own_labels, margin = maps
            colours = palette(int(ref_values.shape[spec.class_axis + 1 if spec.class_axis >= 0
                                                    else spec.class_axis]))
            benign_margin = getattr(spec, "benign_margin", 0.1)
            sections.append(f'<p class="legend">Disagreement:<span style="background:#464646"></span>same label'
                            f'<span style="background:#ffd700"></span>benign flip (reference margin &lt; '
                            f'{benign_margin:g})<span style="background:#e62828"></span>hard flip'
                            + ('<span style="background:#c800c8"></span>NaN/Inf on the board'
                               if nonfinite.any() else '') + '</p>')
            nonfinite = nonfinite.reshape(ref_labels.shape)
            for sample in range(min(ref_labels.shape[0], MAX_SAMPLES_SHOWN)):
                name = (report.inputs.sample_names[sample] if report.inputs is not None
                        and sample < len(report.inputs.sample_names) else f"sample {sample}")
                figures = []
                if inputs is not None and sample < inputs.shape[0]:
                    figures.append(img_tag(input_picture(inputs[sample], scenario.preprocess), f"input {name}"))
                figures.append(img_tag(colours[ref_labels[sample]], f"{report.reference} labels"))
                own = colours[own_labels[sample]]
                own[nonfinite[sample]] = 0  # no class: the scores there are NaN/Inf
                figures.append(img_tag(own, f"{board} labels" + (" (black: NaN/Inf)" if nonfinite[sample].any()
                                                                 else "")))
                picture, benign, hard, bad = disagreement_picture(ref_labels[sample], own_labels[sample],
                                                                  margin[sample], benign_margin, nonfinite[sample])
                total = picture.shape[0] * picture.shape[1]
                caption = f"flips: {benign} benign, {hard} hard of {total}" + (f"; {bad} NaN/Inf" if bad else "")
                figures.append(img_tag(picture, caption))
                sections.append(f'<div class="pics">{"".join(figures)}</div>')
    return "".join(sections)


def line_chart_svg(lines: List[tuple], log: bool = False, threshold: Optional[float] = None,
                   width: int = 560, height: int = 180, x_label: str = "step") -> str:
    """Values per step as polylines: lines are (label, colour, values); log scales the y axis (errors);
    x_label names the x axis's unit (a stream's steps, a net's ops)."""
    def y_of(value):
        return math.log10(max(value, 1e-12)) if log else value

    present = [y_of(v) for _, _, values in lines for v in values if v is not None and math.isfinite(v)]
    if threshold is not None:
        present.append(y_of(threshold))
    if not present:
        return "<p class=dim>No finite values to draw.</p>"
    low, high = min(present), max(present)
    if high == low:
        low, high = low - 1, high + 1
    steps = max(len(values) for _, _, values in lines)
    left, right, top, bottom = 58, 110, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom

    def point(index, value):
        x = left + (plot_w * index / max(steps - 1, 1))
        y = top + plot_h * (1 - (y_of(value) - low) / (high - low))
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccd"/>']
    for value, anchor in ((high, top + 10), (low, top + plot_h)):
        shown = f"{10 ** value:.0e}" if log else f"{value:.3g}"
        parts.append(f'<text x="{left - 4}" y="{anchor}" text-anchor="end">{esc(shown)}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">{esc(x_label)} 0</text>'
                 f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">{esc(x_label)} {steps - 1}</text>')
    if threshold is not None:
        y = top + plot_h * (1 - (y_of(threshold) - low) / (high - low))
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#c5221f" '
                     f'stroke-dasharray="4 3"/><text x="{left + plot_w + 4}" y="{y + 4:.1f}" fill="#c5221f">'
                     f'threshold {threshold:g}</text>')
    for row, (label, colour, values) in enumerate(lines):
        points = " ".join(point(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{points}">'
                     f'<title>{esc(label)}</title></polyline>')
        parts.append(f'<text x="{left + plot_w + 4}" y="{top + 12 + 14 * row}" fill="{colour}">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stream_section(summary: dict) -> str:
    """Per board and output of a stream: the max abs error per step, and both sides' values per step."""
    stream = summary.get("stream")
    if not stream:
        return ""
    specs = summary.get("output_specs") or {}
    parts = [f'<h2 id="stream">Stream: {esc(stream.get("steps"))} steps, carried on each board: '
             f'{esc(", ".join(f"{o} → {i}" for o, i in (stream.get("carry") or {}).items()) or "nothing")}</h2>']
    for board, comparison in comparisons_of(summary):
        for output, result in (comparison.get("outputs") or {}).items():
            series = result.get("series") or {}
            if not series.get("max_abs"):
                continue
            growth = (result.get("metrics") or {}).get("error_growth")
            trend = "" if growth is None else (f" — last third ×{growth:.2g} the first"
                                               + (" (the error grows)" if growth >= GROWS else ""))
            parts.append(f"<h3>{esc(board)}: {esc(output)}</h3><p class=dim>max |error| per step "
                         f"{esc(step_errors_text(series['max_abs']))}{esc(trend)}</p>")
            parts.append(line_chart_svg([("max |err|", "#c5221f", series["max_abs"])], log=True))
            if "target" in series:
                reference = comparison.get("reference") or summary.get("reference")
                own = board.split(" vs ")[0]
                threshold = (specs.get(output) or {}).get("threshold") if "flipped" in series else None
                parts.append(f"<p class=dim>{esc(output)} per step</p>")
                parts.append(line_chart_svg([(reference, "#3b6fd4", series["reference"]),
                                             (own, "#e8710a", series["target"])], threshold=threshold))
            if "flipped" in series:
                flipped = series["flipped"]
                parts.append(f'<p class="{"fail" if flipped else "pass"}">decisions that flip: {len(flipped)} of '
                             f'{len(series["max_abs"])} steps{(" (steps " + ", ".join(map(str, flipped[:20])) + ")") if flipped else ""}</p>')
    return "".join(parts)


def findings(summary: dict) -> str:
    """The classic causes the run shows (diagnose's findings), as the terminal lists them."""
    items = [f'<li><b class="warn">{esc(f.get("title"))}</b> — '
             f'{esc(f.get("board") + ": ") if f.get("board") else ""}{esc(f.get("message"))}</li>'
             for f in summary.get("findings") or []]
    return f"<h2>Likely causes</h2><ul>{''.join(items)}</ul>" if items else ""


def render_html(report, summary: dict) -> str:
    exit_code = summary.get("exit_code")
    passed = exit_code == 0
    label, text = summary_text(summary)
    verdict = f"{label}: {text}"  # the terminal's last line, word for word
    meta = [("scenario", f"{summary['scenario']['name']} ({summary['scenario']['path']})"),
            ("run", summary.get("run_id")), ("started", summary.get("started_at")),
            ("wall", f"{float(summary.get('wall_s') or 0):.1f} s"), ("model", model_line(summary))]
    meta += [(name, f"{shown}  {detail}".strip()) for name, shown, detail in input_rows(summary)]
    meta.append(("settings", settings_text(summary.get("settings") or {})))
    if summary.get("targets_from"):
        meta.append(("boards", targets_text(summary)))
    meta_rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in meta)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>mnn-harness {esc(summary['scenario']['name'])} {esc(summary.get('run_id'))}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>mnn-harness: {esc(summary['scenario']['name'])}</h1>"
        f'<div class="banner {"pass" if passed else "fail"}">{esc(verdict)} [exit {esc(exit_code)}]</div>'
        f'<table class="meta">{meta_rows}</table>'
        f"<h2>Accuracy against {esc(summary.get('reference'))} (the x86 host)</h2>{verdict_table(summary)}"
        f"{findings(summary)}"
        f"{stream_section(summary)}"
        f"<h2>Boards</h2>{boards_table(summary)}"
        f"{decoded_section(report, summary)}"
        f"{pictures(report, summary)}"
        "</body></html>\n")
