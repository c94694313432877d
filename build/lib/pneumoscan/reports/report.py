"""One self-contained HTML page (plots and thumbnails embedded) summarising an evaluation."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pneumoscan import DISCLAIMER
from pneumoscan.modelfile import ModelCard
from pneumoscan.reports.embedded_images import jpeg_uri, png_uri

#: What each plot shows, by file name: the report's captions.
PLOT_CAPTIONS = {
    "roc.png": "ROC curve: sensitivity against 1 - specificity as the threshold moves from 1 "
               "to 0; the red dot is the model's fixed operating point. The area under it is "
               "the AUC in the table.",
    "precision_recall.png": "Precision-recall curve: of the images called pneumonia, the "
                            "share that have it (precision), against the share of pneumonia "
                            "images found (recall), over all thresholds.",
    "confusion_matrix.png": "Confusion matrix at the model's threshold: rows are the true "
                            "labels, columns the predicted ones; the off-diagonal cells are "
                            "the errors listed below.",
    "reliability.png": "Reliability diagram: for images binned by their predicted "
                       "P(pneumonia), the share that truly have pneumonia. On the dotted "
                       "diagonal a probability means what it says.",
    "score_histogram.png": "Scores per true class: how P(pneumonia) is spread for the normal "
                           "and the pneumonia images, with the threshold dashed. Overlap "
                           "around the threshold is where the errors come from.",
}
#: Most misclassified images shown in the report (all of them are in predictions.csv).
MAX_MISCLASSIFIED = 100

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1160px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.35em .7em;text-align:left;vertical-align:middle}
th{background:#f3f3f3} .notice{background:#fff4e5;border-left:4px solid #f0a020;padding:.8em}
.overlap{background:#fdecea;border:2px solid #c62828;color:#7f1d1d;padding:.8em 1em}
.overlap strong{font-size:1.1em}
.plots{display:flex;flex-wrap:wrap;gap:1.5em}
.plots figure{margin:0;max-width:560px}
.plots img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.95em;margin-top:.4em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.thumb img{display:block;width:96px;height:auto}
"""


@dataclass(frozen=True)
class Misclassified:
    """An image the model got wrong at its threshold, for the report's table."""

    file: str
    true_label: str
    predicted_label: str
    probability: float  # calibrated P(pneumonia)
    thumbnail: bytes  # JPEG
    overlap: str = ""  # the side of the model's own split this file is on, or ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    return html.escape(str(value))


def _row(name: str, value: Any, interval: Any = None) -> str:
    shown = _fmt(value) + (f" &nbsp;(95 % CI {_fmt(interval)})" if interval else "")
    return f"<tr><th>{html.escape(name)}</th><td>{shown}</td></tr>"


def _metric_rows(metrics: dict[str, Any]) -> str:
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
    return "".join(rows)


def _cause_table(metrics: dict[str, Any]) -> str:
    if "cause_confusion" not in metrics:
        return ""
    names = metrics["cause_confusion"]["labels"]
    body = "".join(
        f"<tr><th>{n}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
        for n, row in zip(names, metrics["cause_confusion"]["matrix"], strict=True))
    return ("<h2>Normal / bacterial / viral</h2><table><tr><th>true \\ predicted</th>"
            + "".join(f"<th>{n}</th>" for n in names) + f"</tr>{body}</table>"
            "<p>The cause is a secondary, lower-confidence estimate.</p>")


def _figures(plots: Sequence[Path]) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(p.stem.replace("_", " "))}" '
        f'src="{png_uri(p.read_bytes())}"><figcaption><a href="{html.escape(p.name)}">'
        f"{html.escape(p.name)}</a>: {html.escape(PLOT_CAPTIONS.get(p.name, ''))}"
        "</figcaption></figure>" for p in plots)


def _misclassified_table(errors: Sequence[Misclassified], total: int) -> str:
    if not errors:
        return "<h2>Misclassified images</h2><p>None: every image is on the right side of " \
               "the threshold.</p>"
    shown = errors[:MAX_MISCLASSIFIED]
    rows = "".join(
        f'<tr><td class="thumb"><img alt="" src="{jpeg_uri(e.thumbnail)}"></td>'
        f"<td><code>{html.escape(e.file)}</code>"
        + (f"<br><strong>in the model's {html.escape(e.overlap)} data</strong>"
           if e.overlap else "")
        + f"</td><td>{html.escape(e.true_label)}</td><td>{html.escape(e.predicted_label)}</td>"
        f'<td class="num">{e.probability:.3f}</td></tr>' for e in shown)
    more = (f"<p>The {len(shown)} worst of {total} are shown; all are in "
            '<a href="predictions.csv">predictions.csv</a>.</p>' if total > len(shown) else "")
    return (f"<h2>Misclassified images ({total})</h2><p>Worst first: ordered by the "
            "probability the model gave to the wrong answer. Thumbnails are the model's "
            "input (resized, square).</p>"
            "<table><tr><th>image</th><th>file</th><th>true label</th><th>predicted label</th>"
            f"<th>P(pneumonia)</th></tr>{rows}</table>{more}")


def write_report(path: Path, metrics: dict[str, Any], card: ModelCard, plots: list[Path], *,
                 data: str, skipped: list[str], split: str = "",
                 misclassified: Sequence[Misclassified] = (),
                 warnings: Sequence[str] = ()) -> Path:
    """Write ``report.html``: overlap warnings first, then the metrics, the plots with
    captions and the misclassified images (worst first), linking the files beside it.

    Args:
        split: which split of ``data`` was evaluated ("test", "all", ...).
        misclassified: the errors, worst first (at most :data:`MAX_MISCLASSIFIED` shown).
        warnings: sentences on the model's own data among the evaluated images.
    """
    skipped_note = (f'<p>{len(skipped)} unreadable image(s) were skipped and are listed in '
                    '<a href="skipped.txt">skipped.txt</a>.</p>' if skipped else "")
    overlap = "".join(f'<p class="overlap" role="alert"><strong>Warning:</strong> '
                      f"{html.escape(w)}.</p>" for w in warnings)
    if metrics.get("overlap") is None:
        overlap += ("<p class=\"notice\">The model keeps no record of its training files: "
                    "whether these images overlap its training data could not be checked.</p>")
    where = f"the <strong>{html.escape(split)}</strong> split of " if split not in ("", "all") \
        else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pneumoscan evaluation</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>
</head><body>
<h1>pneumoscan evaluation report</h1>
<p class="notice"><strong>{html.escape(DISCLAIMER)}</strong></p>
{overlap}
<p>Data: {where}<code>{html.escape(data)}</code> &middot; model <code>{html.escape(
    card.version or card.arch)}</code> ({html.escape(card.arch)},
{card.preprocessing.image_size} px) &middot; generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>
<p>Positive class: PNEUMONIA. The decision threshold {card.threshold:.2f} was fixed on the
model's own validation split ({html.escape(card.threshold_rule)}); it was not tuned on this
data.</p>
<p>Files beside this report: <a href="metrics.json">metrics.json</a> (every figure below)
&middot; <a href="predictions.csv">predictions.csv</a> (one row per image: file, true_label,
predicted_label, probability)</p>
{skipped_note}
<h2>Metrics</h2><table>{_metric_rows(metrics)}</table>
{_cause_table(metrics)}
<h2>Plots</h2><div class="plots">{_figures(plots)}</div>
{_misclassified_table(misclassified, len(misclassified))}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
