"""The worklist page: ranking, the not-applicable section, error rows, a self-contained file."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from pneumoscan import DISCLAIMER
from pneumoscan.population import ADULT_WARNING
from pneumoscan.predictor import FileResult, Prediction
from pneumoscan.reports.worklist import (
    IMAGE_SIDE,
    WorklistEntry,
    display_names,
    rank_entries,
    render_worklist,
    worklist_entry,
    write_worklist,
)


def _prediction(probability: float, *, in_scope: bool = True, warning: str = "",
                population: str = "pediatric") -> Prediction:
    label = "PNEUMONIA" if probability >= 0.5 else "NORMAL"
    return Prediction(label=label, probability=probability, threshold=0.5, in_scope=in_scope,
                      scope_reason="" if in_scope else "does not look like a frontal chest "
                      "radiograph", cause="viral" if probability >= 0.5 else None,
                      cause_probability=0.2 if probability >= 0.5 else None, heatmap=None,
                      model="test-model", width=224, height=224, population=population,
                      population_reason="the image looks like a child's radiograph",
                      population_warning=warning)


def _entries() -> list[WorklistEntry]:
    return [
        WorklistEntry("scans/low.png", _prediction(0.10)),
        WorklistEntry("scans/broken.jpeg", None, "broken.jpeg: the image data is truncated"),
        WorklistEntry("scans/high.png", _prediction(0.93)),
        WorklistEntry("scans/adult.dcm", _prediction(0.99, warning=ADULT_WARNING,
                                                      population="adult")),
        WorklistEntry("scans/photo.png", _prediction(0.80, in_scope=False)),
        WorklistEntry("scans/mid.png", _prediction(0.55)),
    ]


def test_applicable_results_ranked_apart_from_the_others() -> None:
    applicable, other, failed = rank_entries(_entries())
    assert [e.file for e in applicable] == ["scans/high.png", "scans/mid.png", "scans/low.png"]
    assert [e.file for e in other] == ["scans/adult.dcm", "scans/photo.png"]
    assert [e.file for e in failed] == ["scans/broken.jpeg"]


def test_page_sections_in_order_with_error_rows_and_disclaimer() -> None:
    page = render_worklist(_entries(), model="test-model", source="scans")
    assert DISCLAIMER in page
    ranked = page.index("Ranked results (3)")
    assert ranked < page.index("Not applicable (2)") < page.index("Not read (1)")
    order = [page.index(name) for name in ("high.png", "mid.png", "low.png", "adult.dcm",
                                           "photo.png", "broken.jpeg: the image data")]
    assert order == sorted(order)
    assert "threshold 0.500" in page and "test-model" in page
    assert "6 file(s)" in page and "3 ranked, 2 not applicable, 1 not read" in page


def test_a_result_that_does_not_apply_carries_no_coloured_label() -> None:
    page = render_worklist(_entries(), model="m", source="scans")
    not_applicable = page[page.index("Not applicable (2)"):page.index("Not read")]
    assert 'class="label PNEUMONIA"' not in not_applicable
    assert not_applicable.count("not applicable</span>") == 2
    assert "not a finding" in not_applicable
    assert ADULT_WARNING in not_applicable and "OUT OF SCOPE" in not_applicable
    assert "cause:" not in not_applicable  # no cause estimate for a result that does not apply
    ranked = page[:page.index("Not applicable (2)")]
    assert ranked.count('class="label PNEUMONIA"') == 2
    assert ranked.count('class="label NORMAL"') == 1


def test_file_names_are_escaped_and_shortened() -> None:
    odd = WorklistEntry("in/<script>alert(1)</script>.png", _prediction(0.7))
    page = render_worklist([odd, WorklistEntry("in/b.png", _prediction(0.2))], model="m",
                           source="in")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert display_names(["a/b/x.png", "a/c/y.png"]) == {"a/b/x.png": "b/x.png",
                                                         "a/c/y.png": "c/y.png"}
    assert display_names(["only.png"]) == {"only.png": "only.png"}


def test_entry_keeps_small_images_and_drops_the_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (600, 400), np.uint8)
    heat = rng.random((7, 7)).astype(np.float32)
    prediction = replace(_prediction(0.9), pixels=pixels, heatmap=heat, width=400,
                         height=600)
    entry = worklist_entry(FileResult("x.png", prediction))
    assert entry.prediction is not None and entry.prediction.pixels is None
    assert entry.prediction.heatmap is None
    assert entry.image[:2] == entry.heatmap[:2] == b"\xff\xd8"  # JPEGs
    assert max(Image.open(io.BytesIO(entry.image)).size) == IMAGE_SIDE
    assert Image.open(io.BytesIO(entry.heatmap)).size == Image.open(io.BytesIO(entry.image)).size
    failed = worklist_entry(FileResult("bad.png", None, "bad.png: empty"))
    assert failed.prediction is None and failed.error == "bad.png: empty"

    path = write_worklist(tmp_path / "out" / "worklist.html", [entry, failed], model="m",
                          source="x")
    page = path.read_text()
    assert page.count('src="data:image/jpeg;base64,') == 2
    # self-contained: nothing fetched, no script
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page and "<link" not in page
