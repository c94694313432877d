"""One self-contained HTML page (plots embedded as base64) summarising an evaluation."""

from __future__ import annotations

import base64
import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pneumoscan import DISCLAIMER
from pneumoscan.modelfile import ModelCard

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.35em .7em;text-align:left}
th{background:#f3f3f3} .notice{background:#fff4e5;border-left:4px solid #f0a020;padding:.8em}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1em}
.plots img{width:100%;border:1px solid #ddd}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    return html.escape(str(value))


def _row(name: str, value: Any, interval: Any = None) -> str:
    shown = _fmt(value) + (f" &nbsp;(95 % CI {_fmt(interval)})" if interval else "")
    return f"<tr><th>{html.escape(name)}</th><td>{shown}</td></tr>"


def write_report(path: Path, metrics: dict[str, Any], card: ModelCard, plots: list[Path], *,
                 data: str, skipped: list[str]) -> Path:
    """Write ``report.html`` with the metrics table, the plots and the model's facts."""
    rows = [
        _row("images", metrics["n"]),
        _row("pneumonia / normal", f"{metrics['n_positive']} / {metrics['n_negative']}"),
        _row("threshold (fixed on validation)", metrics["threshold"]),
        _row("ROC AUC", metrics["auc"], metrics["auc_ci95"]),
        _row("accuracy", metrics["accuracy"]),
        _row("sensitivity (recall)", metrics["sensitivity"], metrics.get("sensitivity_ci95")),
        _row("specificity", metrics["specificity"], metrics.get("specificity_ci95")),
        _row("precision (PPV)", metrics["precision"]),
        _row("F1", metrics["f1"]),
        _row("TP / FP / TN / FN",
             f"{metrics['tp']} / {metrics['fp']} / {metrics['tn']} / {metrics['fn']}"),
        _row("Brier score", metrics["brier"]),
        _row("expected calibration error", metrics["ece"]),
    ]
    if "cause_auc" in metrics:
        rows += [_row("bacterial vs viral AUC", metrics["cause_auc"],
                      metrics["cause_auc_ci95"]),
                 _row("bacterial vs viral accuracy", metrics["cause_accuracy"]),
                 _row("pneumonia images with known cause", metrics["cause_n"])]
    cause_table = ""
    if "cause_confusion" in metrics:
        names = metrics["cause_confusion"]["labels"]
        body = "".join(
            f"<tr><th>{n}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
            for n, row in zip(names, metrics["cause_confusion"]["matrix"], strict=True))
        cause_table = ("<h2>Normal / bacterial / viral</h2><table><tr><th>true \\ predicted"
                       "</th>" + "".join(f"<th>{n}</th>" for n in names) + f"</tr>{body}"
                       "</table><p>The cause is a secondary, lower-confidence estimate.</p>")
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.stem.replace("_", " ")}'
        "</figcaption></figure>" for p in plots)
    skipped_note = (f"<p>{len(skipped)} unreadable image(s) were skipped and are listed in "
                    "skipped.txt.</p>" if skipped else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pneumoscan evaluation</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>
</head><body>
<h1>pneumoscan evaluation report</h1>
<p class="notice"><strong>{html.escape(DISCLAIMER)}</strong></p>
<p>Data: <code>{html.escape(data)}</code> &middot; model <code>{html.escape(card.version or
card.arch)}</code> ({html.escape(card.arch)}, {card.preprocessing.image_size} px) &middot;
generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>
<p>Positive class: PNEUMONIA. The decision threshold {card.threshold:.2f} was fixed on the
model's own validation split ({html.escape(card.threshold_rule)}); it was not tuned on this
data.</p>
{skipped_note}
<h2>Metrics</h2><table>{''.join(rows)}</table>
{cause_table}
<h2>Plots</h2><div class="plots">{images}</div>
</body></html>
"""
    path.write_text(page)
    return path
