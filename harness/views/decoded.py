"""report.html's section on decoded outputs: what the application sees on both sides.

Read from the record (each comparison's "decoded" sub-dict, through outcome.decoded_of). Detections: per
side compared and sample, the input with both sides' boxes drawn over it, matched boxes green (the
reference's thin, the board's thick), missed ones (the reference has them, the board not) red, extra ones
(only the board) magenta, each with its score. Text: the samples whose text differs, side by side. Classes:
the samples whose top class changed, with both sides' top k.
"""

from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from ..analysis.outcome import comparisons_of, decoded_of
from ..core.npz import load_tensor
from .pictures import MAX_SAMPLES_SHOWN, esc, img_tag, input_picture

MATCHED_BGR = (60, 160, 40)
MISSED_BGR = (40, 40, 220)
EXTRA_BGR = (200, 40, 200)
DRAWN_PX = 384
"""The side of the picture the boxes are drawn on (the input is scaled up to it, so thin lines stay visible)."""
ROWS_SHOWN = 20


def draw_boxes(picture: np.ndarray, sample: dict, units: str, input_size) -> np.ndarray:
    """The picture with both sides' boxes: matched green, missed red, extra magenta (BGR uint8)."""
    height, width = picture.shape[:2]
    factor = DRAWN_PX / max(height, width)
    canvas = cv2.resize(picture, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_NEAREST)
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    scale_x = canvas.shape[1] / (1.0 if units == "normalized" else input_size[1])
    scale_y = canvas.shape[0] / (1.0 if units == "normalized" else input_size[0])

    def box(values, colour, thickness, text=None):
        x0, y0, x1, y1 = values[:4]
        p0 = (int(round(x0 * scale_x)), int(round(y0 * scale_y)))
        p1 = (int(round(x1 * scale_x)), int(round(y1 * scale_y)))
        cv2.rectangle(canvas, p0, p1, colour, thickness)
        if text:
            cv2.putText(canvas, text, (p0[0] + 2, max(p0[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                        cv2.LINE_AA)

    missed = {item["index"] for item in sample.get("unmatched") or [] if item.get("what") == "missed"}
    extra = {item["index"] for item in sample.get("unmatched") or [] if item.get("what") == "extra"}
    reference, target = sample.get("reference") or [], sample.get("target") or []
    for index, values in enumerate(reference):
        colour = MISSED_BGR if index in missed else MATCHED_BGR
        box(values, colour, 1, f"{values[4]:.2f}" if index in missed else None)
    for index, values in enumerate(target):
        colour = EXTRA_BGR if index in extra else MATCHED_BGR
        box(values, colour, 2, f"{values[4]:.2f}")
    return canvas


def decoded_section(report, summary: dict) -> str:
    """Every decoded output of the record, per side compared: pictures of boxes, tables of texts and classes."""
    decoded_names = [name for name, spec in (summary.get("output_specs") or {}).items()
                     if isinstance(spec, dict) and spec.get("decoded")]
    if not decoded_names:
        return ""
    inputs = _inputs(report, summary)
    names = list((summary.get("inputs") or {}).get("samples") or [])
    parts = ['<h2 id="decoded">What the application sees (decoded outputs)</h2>']
    for output in decoded_names:
        spec = summary["output_specs"][output]
        parts.append(f"<h3>{esc(output)} <span class=dim>({esc(spec.get('kind'))}"
                     + (f", decoded by {esc(spec['decode'])}" if spec.get("decode") else "") + ")</span></h3>")
        for label, comparison in comparisons_of(summary):
            decoded = decoded_of((comparison.get("outputs") or {}).get(output))
            if decoded is None:
                continue
            reference = comparison.get("reference") or summary.get("reference")
            parts.append(f"<p><b>{esc(label)}</b>: {esc(decoded.label)}"
                         + (f' <span class="fail">{esc(decoded.record.get("error"))}</span>'
                            if decoded.record.get("error") else "")
                         + (f' <span class=dim>(traceback: {esc(decoded.record["traceback"])})</span>'
                            if decoded.record.get("traceback") else "") + "</p>")
            if decoded.kind == "detections":
                parts.append(_detections(decoded, inputs, report.scenario.preprocess, names, label.split(" vs ")[0],
                                         reference))
            elif decoded.kind == "ctc_text":
                parts.append(_texts(decoded, names, label.split(" vs ")[0], reference))
            elif decoded.kind == "class_scores":
                parts.append(_classes(decoded, names, label.split(" vs ")[0], reference))
    return "".join(parts)


def _inputs(report, summary: dict) -> Optional[np.ndarray]:
    image_input = (summary.get("inputs") or {}).get("image_input")
    path = getattr(getattr(report, "inputs", None), "path", None)
    if not image_input or path is None or not Path(path).exists() or report.scenario.preprocess is None:
        return None
    return load_tensor(path, image_input)


def _detections(decoded, inputs, preprocess, names: List[str], board: str, reference: str) -> str:
    if inputs is None:
        return "<p class=dim>No picture: no input of this run is an image.</p>"
    size = inputs.shape[-3:-1] if preprocess.layout == "NHWC" else inputs.shape[-2:]
    legend = (f'<p class="legend"><span style="background:#28a03c"></span>matched (thin: {esc(reference)}, '
              f'thick: {esc(board)})<span style="background:#dc2828"></span>missed on {esc(board)}'
              f'<span style="background:#c828c8"></span>extra on {esc(board)}</p>')
    figures = []
    for sample in decoded.samples[:MAX_SAMPLES_SHOWN]:
        index = int(sample.get("sample", 0))
        if index >= len(inputs):
            continue
        picture = draw_boxes(input_picture(inputs[index], preprocess), sample,
                             decoded.record.get("box_units", "pixels"), size)
        unmatched = sample.get("unmatched") or []
        caption = (f"{names[index] if index < len(names) else f'sample {index}'}: "
                   f"{len(sample.get('matched') or [])} matched, "
                   f"{sum(1 for u in unmatched if u.get('what') == 'missed')} missed, "
                   f"{sum(1 for u in unmatched if u.get('what') == 'extra')} extra")
        figures.append(img_tag(picture, caption))
    return legend + f'<div class="pics">{"".join(figures)}</div>'


def _texts(decoded, names: List[str], board: str, reference: str) -> str:
    differing = [s for s in decoded.samples if s.get("distance")]
    if not differing:
        return f"<p class=pass>Every text reads the same on {esc(board)} as on {esc(reference)}.</p>"
    rows = "".join(f"<tr><td>{esc(names[s['sample']] if s['sample'] < len(names) else s['sample'])}</td>"
                   f"<td><code>{esc(s['reference'])}</code></td><td><code>{esc(s['target'])}</code></td>"
                   f"<td class=num>{s['distance']}</td><td>"
                   f"{'' if s.get('benign') is None else 'a near-tie' if s['benign'] else 'hard'}</td></tr>"
                   for s in differing[:ROWS_SHOWN])
    more = f"<p class=dim>and {len(differing) - ROWS_SHOWN} more</p>" if len(differing) > ROWS_SHOWN else ""
    return (f'<table class="texts"><thead><tr><th>Sample</th><th>{esc(reference)}</th><th>{esc(board)}</th>'
            f"<th>edits</th><th></th></tr></thead><tbody>{rows}</tbody></table>{more}")


def _classes(decoded, names: List[str], board: str, reference: str) -> str:
    changed = [s for s in decoded.samples if (s.get("reference") or [None])[0] != (s.get("target") or [None])[0]]
    if not changed:
        return f"<p class=pass>Every top class is the same on {esc(board)} as on {esc(reference)}.</p>"
    rows = "".join(f"<tr><td>{esc(names[s['sample']] if s['sample'] < len(names) else s['sample'])}</td>"
                   f"<td>{esc(', '.join(map(str, s.get('reference') or [])))}</td>"
                   f"<td>{esc(', '.join(map(str, s.get('target') or [])))}</td>"
                   f"<td class=num>{esc(s.get('margin'))}</td></tr>" for s in changed[:ROWS_SHOWN])
    return (f"<table><thead><tr><th>Sample</th><th>{esc(reference)} top k</th><th>{esc(board)} top k</th>"
            f"<th>{esc(reference)} margin</th></tr></thead><tbody>{rows}</tbody></table>")
