"""The site check's HTML report: one self-contained page, the verdict first, then the
figures with their intervals and the histograms of P(pneumonia)."""

from __future__ import annotations

import html
import io
import math
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
import numpy as np

from pneumoscan import DISCLAIMER
from pneumoscan.reports.embedded_images import png_uri
from pneumoscan.reports.plots import DPI, LEGIBLE
from pneumoscan.reports.site_check import FilmSummary, SiteCheck

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.35em .7em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:.8em 1em;border-left:6px solid} .verdict p{margin:.4em 0}
.holds{background:#eef7ee;border-color:#2e7d32} .shifted{background:#fdecea;border-color:#c62828}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd}
"""


def probability_histogram(check: SiteCheck) -> bytes:
    """PNG: P(pneumonia) of the site's films and of the validation films (share per bin)."""
    bins = [i / 20 for i in range(21)]
    with plt.rc_context(LEGIBLE):
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for summary, label, colour in ((check.reference, "validation films", "#888888"),
                                       (check.site, "these films", "#c62828")):
            if summary.applicable:
                weights = np.full(summary.applicable, 1.0 / summary.applicable)
                ax.hist(summary.probabilities, bins=bins, weights=weights, alpha=0.55,
                        label=f"{label} (n={summary.applicable})", color=colour)
        ax.set_xlabel("P(pneumonia)")
        ax.set_ylabel("share of films")
        ax.set_title("Films the result applies to")
        ax.legend(loc="upper center")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        plt.close(fig)
    return buffer.getvalue()


def _share(summary: FilmSummary, count: int, of: int) -> str:
    value, (low, high) = summary.share(count, of)
    if math.isnan(value):
        return "&ndash;"
    return f"{value:.1%} [{low:.1%}, {high:.1%}] ({count}/{of})"


def _rows(check: SiteCheck) -> str:
    rows = []
    for title, measure in (
        ("films compared", lambda s: str(s.n)),
        ("out of scope", lambda s: _share(s, s.out_of_scope, s.n)),
        ("adult (of those in scope)", lambda s: _share(s, s.adult, s.in_scope)),
        ("population unknown (of those in scope)", lambda s: _share(s, s.unknown, s.in_scope)),
        ("called pneumonia (of those the result applies to)",
         lambda s: _share(s, s.positive, s.applicable)),
        ("mean P(pneumonia) (of those the result applies to)",
         lambda s: f"{float(np.mean(s.probabilities)):.3f}" if s.applicable else "&ndash;"),
    ):
        rows.append(f"<tr><th>{title}</th><td class=num>{measure(check.site)}</td>"
                    f"<td class=num>{measure(check.reference)}</td></tr>")
    return "\n".join(rows)


def render_site_check(check: SiteCheck, *, source: str,
                      generated: datetime | None = None) -> str:
    """The report as HTML text."""
    generated = generated or datetime.now(UTC)
    kind = "holds" if check.holds else "shifted"
    low, high = check.domain_auc_ci95
    sentences = "".join(f"<p>{html.escape(s)}</p>" for s in check.verdict)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pneumoscan site check</title>
<style>{_STYLE}</style></head><body>
<h1>Site check</h1>
<p>{html.escape(source)} against the validation films of model
<code>{html.escape(check.model)}</code>; {generated:%Y-%m-%d %H:%M} UTC.</p>
<div class="verdict {kind}" role="status">{sentences}
<p><strong>Run <code>pneumoscan calibrate</code> before go-live:
{"yes" if check.calibrate else "advised, not required"}.</strong></p></div>
<h2>Figures</h2>
<table><tr><th></th><th>these films</th><th>validation films</th></tr>
{_rows(check)}
</table>
<p>Intervals are 95 % Wilson intervals. {check.unreadable} file(s) could not be read.</p>
<h2>Two-sample tests</h2>
<table>
<tr><th>domain classifier AUC on the pooled features (0.5: indistinguishable)</th>
<td class=num>{check.domain_auc:.3f} [{low:.3f}, {high:.3f}]</td></tr>
<tr><th>Kolmogorov-Smirnov statistic of P(pneumonia) (p-value)</th>
<td class=num>{check.ks_statistic:.3f} ({check.ks_pvalue:.2g})</td></tr>
</table>
<p>A logistic regression on the model's pooled features learns to tell these films from
the validation films, scored out of fold; its AUC measures how different they look to the
model, whatever their labels. P(pneumonia) also moves with the share of sick patients,
which differs between sites; the AUC does not.</p>
<figure><img alt="Histograms of P(pneumonia) of these films and of the validation films"
src="{png_uri(probability_histogram(check))}"><figcaption>P(pneumonia) of the films the
result applies to, as a share of each set.</figcaption></figure>
<footer><p>{html.escape(DISCLAIMER)}</p></footer>
</body></html>
"""


def write_site_check_report(path: Path, check: SiteCheck, *, source: str) -> Path:
    """Write :func:`render_site_check` to ``path``; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_site_check(check, source=source))
    return path
