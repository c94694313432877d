"""The worklist of ``predict DIR --report worklist.html``: one self-contained HTML file.

For people who score an archive offline: every image of a run, ranked most suspicious first,
with its thumbnail, its heat map, its result and its flags; images, styles and all travel
inside the file (no link, no script, nothing fetched), so it can be archived or mailed whole.

Three sections, never mixed:

1. **Ranked results**: the applicable ones (in scope, no population warning), by calibrated
   P(pneumonia), highest first.
2. **Not applicable**: out-of-scope images and images outside the population the model was
   validated on. They are not ranked among the findings and carry no coloured label: the
   model's output is shown small and grey, under the reason it does not apply.
3. **Not read**: files that could not be read, with the error.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pneumoscan import DISCLAIMER
from pneumoscan.heatmap import overlay
from pneumoscan.predictor import FileResult, Prediction
from pneumoscan.reports.embedded_images import jpeg_uri, thumbnail_jpeg

#: Longest side of the worklist's images, pixels: shown at a third, full size on a click.
IMAGE_SIDE = 288


@dataclass(frozen=True)
class WorklistEntry:
    """One file of the run: its result (pixels dropped) or error, and its small images."""

    file: str
    prediction: Prediction | None
    error: str = ""
    image: bytes = b""  # JPEG of the radiograph, at most IMAGE_SIDE
    heatmap: bytes = b""  # JPEG of the heat-map overlay, at most IMAGE_SIDE


def worklist_entry(result: FileResult) -> WorklistEntry:
    """The entry of one file; images from its pixels and heat map when it has them."""
    prediction = result.prediction
    if prediction is None:
        return WorklistEntry(result.file, None, result.error)
    image = heat = b""
    if prediction.pixels is not None:
        image = thumbnail_jpeg(prediction.pixels, IMAGE_SIDE)
        if prediction.heatmap is not None:
            heat = thumbnail_jpeg(overlay(prediction.pixels, prediction.heatmap, alpha=0.4,
                                          max_side=IMAGE_SIDE, legend=False), IMAGE_SIDE)
    return WorklistEntry(result.file, replace(prediction, pixels=None, heatmap=None),
                         image=image, heatmap=heat)


def rank_entries(entries: Sequence[WorklistEntry]) -> tuple[
        list[WorklistEntry], list[WorklistEntry], list[WorklistEntry]]:
    """(applicable by P(pneumonia) highest first, not applicable likewise, unreadable in
    their order). Ties keep the input order."""
    def by_probability(entry: WorklistEntry) -> float:
        assert entry.prediction is not None
        return -entry.prediction.probability

    predicted = [e for e in entries if e.prediction is not None]
    applicable = sorted((e for e in predicted if e.prediction and e.prediction.applicable),
                        key=by_probability)
    other = sorted((e for e in predicted if e.prediction and not e.prediction.applicable),
                   key=by_probability)
    return applicable, other, [e for e in entries if e.prediction is None]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#1d1d1d;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:1.6em}
.notice{background:#fff4e5;border-left:5px solid #f0a020;padding:.7em 1em;font-weight:600}
.facts{color:#444}
table{border-collapse:collapse;width:100%;margin:.6em 0}
th,td{border-bottom:1px solid #ddd;padding:.45em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{word-break:break-all}
.zoom input{position:absolute;opacity:0;width:1px;height:1px}
.zoom img{width:96px;height:auto;cursor:zoom-in;border:1px solid #ccc;display:block}
.zoom input:checked+img{width:auto;max-width:min(100%,288px);cursor:zoom-out}
.zoom input:focus-visible+img{outline:3px solid #1565c0}
.label{font-weight:700;font-size:1.1em}
.PNEUMONIA{color:#b71c1c} .NORMAL{color:#1b5e20}
.flag{display:inline-block;font-weight:700;border-radius:3px;padding:.1em .45em;margin:.1em 0}
.scope{background:#fff3cd;color:#6d4c00;border:1px solid #e0b000}
.population{background:#fde2e1;color:#8a1c1c;border:1px solid #d9534f}
.muted{color:#777;font-size:.9em}
.na td{background:#fafafa}
.error{color:#b71c1c}
@media print{.zoom img{width:72px} th{position:static}}
"""


def _zoomable(data: bytes, alt: str) -> str:
    """An image shown small that opens to its full size on a click (no script: a checkbox)."""
    if not data:
        return '<span class="muted">none</span>'
    return (f'<label class="zoom" title="click to enlarge"><input type="checkbox" '
            f'aria-label="enlarge {html.escape(alt)}"><img alt="{html.escape(alt)}" '
            f'src="{jpeg_uri(data)}"></label>')


def _flags(prediction: Prediction) -> str:
    flags = []
    if not prediction.in_scope:
        flags.append(f'<span class="flag scope">OUT OF SCOPE</span> '
                     f"{html.escape(prediction.scope_reason)}")
    if prediction.population_warning:
        flags.append(f'<span class="flag population">{html.escape(prediction.population.upper())}'
                     f"</span> {html.escape(prediction.population_warning)}"
                     + (f' <span class="muted">({html.escape(prediction.population_reason)})'
                        "</span>" if prediction.population_reason else ""))
    elif prediction.population_reason:
        flags.append(f'<span class="muted">{html.escape(prediction.population)}: '
                     f"{html.escape(prediction.population_reason)}</span>")
    return "<br>".join(flags)


def _result_cell(prediction: Prediction) -> str:
    """The label and numbers of an applicable result; for another, the model's output in
    small grey type under "not applicable", so it cannot be read as a finding."""
    numbers = (f"P(pneumonia) {prediction.probability:.3f} "
               f'<span class="muted">(threshold {prediction.threshold:.3f})</span>')
    if not prediction.applicable:
        return ('<span class="label">not applicable</span><br><span class="muted">model '
                f"output {html.escape(prediction.label)}, P(pneumonia) "
                f"{prediction.probability:.3f}: not a finding</span>")
    cause = ""
    if prediction.cause is not None and prediction.cause_probability is not None:
        cause = (f'<br><span class="muted">cause: {html.escape(prediction.cause)} '
                 f"(P(bacterial) {prediction.cause_probability:.2f}; secondary, "
                 "lower-confidence)</span>")
    return (f'<span class="label {html.escape(prediction.label)}">'
            f"{html.escape(prediction.label)}</span><br>{numbers}{cause}")


def display_names(files: Sequence[str]) -> dict[str, str]:
    """Each file's path from the folder they all lie under (short names, not the same long
    prefix on every row); the paths as given when they share none or there is one."""
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    except ValueError:  # none, or on different drives
        return {f: f for f in files}
    if len(files) < 2:
        return {f: f for f in files}
    return {f: os.path.relpath(os.path.abspath(f), folder) for f in files}


def _rows(entries: Sequence[WorklistEntry], names: dict[str, str], *, ranked: bool) -> str:
    rows = []
    for rank, entry in enumerate(entries, start=1):
        prediction = entry.prediction
        assert prediction is not None
        name = names.get(entry.file, entry.file)
        rows.append(
            f'<tr class="{"" if ranked else "na"}"><td class="num">{rank if ranked else ""}'
            f"</td><td>{_zoomable(entry.image, 'radiograph ' + name)}</td>"
            f"<td>{_zoomable(entry.heatmap, 'heat map ' + name)}</td>"
            f"<td><code>{html.escape(name)}</code><br><span class=\"muted\">"
            f"{prediction.width}x{prediction.height}</span></td>"
            f"<td>{_result_cell(prediction)}</td><td>{_flags(prediction)}</td></tr>")
    return "".join(rows)


def _table(entries: Sequence[WorklistEntry], names: dict[str, str], *, ranked: bool) -> str:
    head = ("<tr><th>rank</th><th>image</th><th>heat map</th><th>file</th><th>result</th>"
            "<th>flags</th></tr>")
    return f"<table>{head}{_rows(entries, names, ranked=ranked)}</table>"


def render_worklist(entries: Sequence[WorklistEntry], *, model: str, source: str,
                    generated: datetime | None = None) -> str:
    """The worklist page as HTML text."""
    applicable, other, failed = rank_entries(entries)
    names = display_names([e.file for e in entries])
    generated = generated or datetime.now(UTC)
    thresholds = sorted({e.prediction.threshold for e in entries if e.prediction})
    threshold = f" &middot; threshold {thresholds[0]:.3f}" if len(thresholds) == 1 else ""
    sections = [
        f"<h2>Ranked results ({len(applicable)})</h2>",
        "<p>Most suspicious first: by the calibrated probability of pneumonia. Only results "
        "the model can vouch for are ranked: in scope and from the population it was "
        "validated on (children aged 1&ndash;5).</p>",
        _table(applicable, names, ranked=True) if applicable else "<p>None.</p>",
    ]
    if other:
        sections += [
            f"<h2>Not applicable ({len(other)})</h2>",
            "<p>Out of scope, or outside the population this model was validated on: the "
            "model's output for these images is not a finding and they are not ranked among "
            "the results above.</p>", _table(other, names, ranked=False)]
    if failed:
        rows = "".join(f"<tr><td><code>{html.escape(names.get(e.file, e.file))}</code></td>"
                       f'<td class="error">{html.escape(e.error)}</td></tr>' for e in failed)
        sections += [f"<h2>Not read ({len(failed)})</h2>",
                     f"<table><tr><th>file</th><th>error</th></tr>{rows}</table>"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pneumoscan worklist</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>
</head><body>
<h1>pneumoscan worklist</h1>
<p class="notice" role="note">{html.escape(DISCLAIMER)}</p>
<p class="facts">{len(entries)} file(s) from <code>{html.escape(source)}</code>:
{len(applicable)} ranked, {len(other)} not applicable, {len(failed)} not read &middot; model
<code>{html.escape(model)}</code>{threshold} &middot; generated {generated:%Y-%m-%d %H:%M} UTC.
Click an image to enlarge it. Heat maps show where the model found evidence of pneumonia,
on one scale for every image.</p>
{''.join(sections)}
</body></html>
"""


def write_worklist(path: Path, entries: Sequence[WorklistEntry], *, model: str,
                   source: str) -> Path:
    """Write the worklist page to ``path`` (folders created); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_worklist(entries, model=model, source=source), encoding="utf-8")
    return path
