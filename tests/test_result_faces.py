"""Every face of a result, for each kind of result, checked together against one table.

What a result means is decided once (:mod:`pneumoscan.result_meaning`); the faces only
render it. Here each case of :data:`CASES` (applicable positive, applicable negative, an
adult, an image out of scope, an adult's film out of scope, an unreadable file) goes
through every face that Python renders: ``Prediction.to_dict`` and the JSON API (through
the real app), the CLI's summary, table and CSV/JSON rows, the worklist, the ``--cam-dir``
overlay, the DICOM SR and Secondary Capture and the node's log line;
:func:`test_the_page_renders_the_same` puts the same table through the web page in
Chromium. Every face must say the same thing: the finding or none, the cause or none, NOT
APPLICABLE and why, the model's output only greyed, and a coloured heat map only for a
result that applies.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.imaging import DEFAULT_MAX_PIXELS, DecodedImage
from pneumoscan.modelfile import ModelCard
from pneumoscan.population import ADULT_WARNING, UNKNOWN_WARNING
from pneumoscan.predictor import FileResult, Prediction, Predictor
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.result_meaning import HEATMAP_COLOUR, HEATMAP_GREY, NOT_APPLICABLE
from pneumoscan.scope import FEATURE_REASON

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names

WIDTH, HEIGHT = 120, 100  # the case images; each case's image is WIDTH + its index wide


def _prediction(label: str, probability: float, **fields: object) -> Prediction:
    positive = label == "PNEUMONIA"
    base = Prediction(label=label, probability=probability, threshold=0.715, in_scope=True,
                      scope_reason="", cause="viral" if positive else None,
                      cause_probability=0.2 if positive else None,
                      heatmap=np.full((7, 7), 0.9, np.float32), model="faces-1", width=WIDTH,
                      height=HEIGHT, population="pediatric",
                      population_reason="the image looks like the pediatric radiographs")
    return replace(base, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    """One kind of result and what every face must show for it."""

    name: str
    prediction: Prediction | None  # None: the file cannot be read
    finding: str | None  # the label shown as a finding; None: none
    cause: str | None  # the cause shown; None: none
    flags: tuple[str, ...]  # after NOT APPLICABLE; () when the result applies
    model_output_shown: bool  # people see the raw output (greyed, "not a finding")
    heatmap: str | None  # HEATMAP_COLOUR, HEATMAP_GREY (only when asked, greyed) or None


CASES = [
    Case("applicable-positive", _prediction("PNEUMONIA", 0.93), "PNEUMONIA", "viral", (),
         False, HEATMAP_COLOUR),
    Case("applicable-negative", _prediction("NORMAL", 0.10), "NORMAL", None, (), False,
         HEATMAP_COLOUR),
    Case("adult", _prediction("PNEUMONIA", 0.982, population="adult",
                              population_reason="DICOM header: patient aged 18 years or older",
                              population_warning=ADULT_WARNING),
         None, None, ("adult",), True, HEATMAP_GREY),
    Case("out-of-scope", _prediction("PNEUMONIA", 0.935, in_scope=False,
                                     scope_reason="does not look like a frontal chest "
                                     "radiograph", population="unknown",
                                     population_reason="not assessed: the image does not "
                                     "look like a chest radiograph",
                                     population_warning=UNKNOWN_WARNING),
         None, None, ("out of scope",), False, HEATMAP_GREY),
    # An adult's film from another hospital: out of scope by the model's features alone, so
    # the population check still says whose it is (scope.is_chest_radiograph).
    Case("adult-unlike-training", _prediction("PNEUMONIA", 0.951, in_scope=False,
                                           scope_reason=FEATURE_REASON, population="adult",
                                           population_reason="the image looks like an adult "
                                           "radiograph (estimated from the image)",
                                           population_warning=ADULT_WARNING),
         None, None, ("out of scope", "adult"), False, HEATMAP_GREY),
    Case("unreadable", None, None, None, (), False, None),
]
IDS = [case.name for case in CASES]
ERROR = "broken.png: the image data is truncated or corrupt"


def case_image(index: int) -> bytes:
    """A grey PNG whose width names its case (the fake model reads it back)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH + index]
    buffer = io.BytesIO()
    Image.fromarray((40 + (xx + yy) % 150).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def with_pixels(case: Case) -> Prediction:
    assert case.prediction is not None
    index = CASES.index(case)
    pixels = np.asarray(Image.open(io.BytesIO(case_image(index))))
    return replace(case.prediction, pixels=pixels, width=pixels.shape[1])


def coloured(rgb: np.ndarray) -> bool:
    """Whether any pixel of ``rgb`` ``(H, W, 3)`` has colour (R, G, B not all equal)."""
    channels = rgb[..., :3].astype(int)
    return bool((np.abs(channels[..., 0] - channels[..., 1]) > 8).any()
                or (np.abs(channels[..., 1] - channels[..., 2]) > 8).any())


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class CasePredictor:
    """Decodes uploads for real and answers each with its case's prediction."""

    def __init__(self) -> None:
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.card = ModelCard(arch="fake", preprocessing=PreprocessConfig(image_size=64),
                              version="faces-1", threshold=0.715)
        self.scope = object()
        self.backend = type("Backend", (), {"name": "fake"})()

    version = "faces-1"
    decode = Predictor.decode

    def predict_decoded(self, images: list[DecodedImage], *,
                        heatmap: bool = True) -> list[Prediction]:
        predictions = []
        for decoded in images:
            case = CASES[decoded.pixels.shape[1] - WIDTH]
            assert case.prediction is not None
            predictions.append(replace(case.prediction, pixels=decoded.pixels,
                                       width=decoded.pixels.shape[1],
                                       heatmap=case.prediction.heatmap if heatmap else None))
        return predictions


@pytest.fixture(scope="module")
def api():
    from fastapi.testclient import TestClient

    from pneumoscan.server import ServerSettings, create_app

    app = create_app(ServerSettings(), predictor=CasePredictor())  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


def upload(index: int) -> bytes:
    return case_image(index) if CASES[index].prediction is not None else case_image(0)[:60]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_face_says_the_same(case: Case, api, dicom_dir: Path) -> None:
    pytest.importorskip("highdicom")
    import pydicom

    from pneumoscan.cli.console import console, stdout
    from pneumoscan.cli.predict_command import _print_summary, _print_table
    from pneumoscan.dicom_node import codes
    from pneumoscan.dicom_node.heatmap_capture import banner, banner_lines
    from pneumoscan.dicom_node.results import build_results
    from pneumoscan.reports.prediction_output import result_row
    from pneumoscan.reports.result_overlay import corner_lines, result_overlay_png
    from pneumoscan.reports.worklist import render_worklist, worklist_entry

    index = CASES.index(case)
    headline = f"{NOT_APPLICABLE}: {', '.join(case.flags)}" if case.flags else ""
    result = (FileResult(f"case{index}.png", with_pixels(case)) if case.prediction
              else FileResult("broken.png", None, ERROR))

    # The JSON API (the real app, a fake model): to_dict and the PNGs.
    response = api.post("/api/v1/predict?heatmap=true",
                        files={"file": ("x.png", upload(index), "image/png")})
    if case.prediction is None:
        assert response.status_code == 422
    else:
        body = response.json()
        assert response.status_code == 200, body
        assert body["label"] == case.finding
        assert body["applicable"] == (case.finding is not None)
        assert body["cause"] == case.cause
        assert (body["probability"] is None) == (case.finding is None)
        assert body["model_output"]["label"] == case.prediction.label  # always, for programs
        assert bool(body["model_output_note"]) == case.model_output_shown
        assert len(body["not_applicable_reasons"]) == len(case.flags)
        assert body["heatmap_style"] == case.heatmap
        heat = png_pixels(base64.b64decode(body["heatmap_png"]))
        assert coloured(heat) == (case.heatmap == HEATMAP_COLOUR)
        assert "heatmap" not in case.prediction.to_dict()

    # The CLI: rows (CSV and JSON), the table, the one-file summary.
    row = result_row(result)
    assert row["label"] == case.finding and row["cause"] == case.cause
    if case.prediction is None:
        assert row["error"] == ERROR and row["model_output_label"] is None
    else:
        assert row["model_output_label"] == case.prediction.label
        assert row["applicable"] == (case.finding is not None)
    with stdout.capture() as table_out:
        _print_table([result])
    with stdout.capture() as summary_out, console.capture() as summary_err:
        _print_summary(result, None)
    table, summary = table_out.get(), summary_out.get() + summary_err.get()
    for text in (table, summary):
        flat = " ".join(text.split())
        assert (case.finding is not None and case.finding in flat) or case.finding is None
        assert ("PNEUMONIA" in flat) == (case.finding == "PNEUMONIA"
                                         or case.model_output_shown)
        assert ("viral" in flat) == (case.cause == "viral")
        for flag in case.flags:  # the summary names it in its reason: "Out of scope: ..."
            assert flag in flat.lower()
    assert ("NOT APPLICABLE" in summary) == bool(case.flags)
    assert ("not applicable" in table) == bool(case.flags)
    assert ("model output" in " ".join(summary.split())) == case.model_output_shown
    if case.prediction is None:
        assert "not read" in table and "truncated" in summary

    # The worklist: section, label, heat map (withheld when the result does not apply).
    page = render_worklist([worklist_entry(result)], model="faces-1", source="in")
    section = ("Ranked results (1)" if case.finding else "Not read (1)"
               if case.prediction is None else "Not applicable (1)")
    assert section in page
    assert (f'class="label {case.finding}"' in page) == (case.finding is not None)
    assert ("cause: viral" in page) == (case.cause == "viral")
    assert ("model output PNEUMONIA" in page) == case.model_output_shown
    images = page.count('src="data:image/jpeg;base64,')
    assert images == {HEATMAP_COLOUR: 2, HEATMAP_GREY: 1, None: 0}[case.heatmap]
    if case.heatmap == HEATMAP_GREY:
        assert "Heat map withheld" in page

    if case.prediction is None:
        return
    prediction = result.prediction
    assert prediction is not None
    meaning = prediction.meaning

    # The --cam-dir overlay: asked for, so drawn; greyed when the result does not apply.
    lines = [text for text, _ in corner_lines(prediction)]
    assert lines[0] == (case.finding or headline)
    assert any("model output" in line for line in lines) == case.model_output_shown
    overlay = png_pixels(result_overlay_png(prediction))
    picture = overlay[overlay.shape[0] // 2:HEIGHT - 5]  # below the corner, above the legend
    assert coloured(picture) == (case.heatmap == HEATMAP_COLOUR)

    # The node's log line.
    assert meaning.summary().startswith(case.finding or headline)

    # The DICOM SR and Secondary Capture, paired as the node and --dicom-out pair them.
    source = pydicom.dcmread(dicom_dir / "cr_siim_pa_jpeg_baseline.dcm", stop_before_pixels=True)
    report, capture = build_results(source, prediction)
    items = {item.ConceptNameCodeSequence[0].CodeValue: item for item in report.ContentSequence}
    finding_item = items.get(codes.PNEUMONIA.value)
    if case.finding is None:
        assert finding_item is None  # no coded finding for a result that does not apply
        assert items[codes.APPLICABLE.value].ConceptCodeSequence[0].CodeValue == codes.NO.value
        reasons = [child.TextValue for child in items[codes.APPLICABLE.value].ContentSequence
                   if "TextValue" in child]
        assert reasons == list(meaning.reasons)
    else:
        expected = codes.PRESENT if case.finding == "PNEUMONIA" else codes.ABSENT
        assert finding_item.ConceptCodeSequence[0].CodeValue == expected.value
    assert (codes.CAUSE_ESTIMATE.value in items) == (case.cause is not None)
    assert (codes.MODEL_OUTPUT.value in items) == case.model_output_shown
    assert all(codes.PROBABILITY.value not in _names(item) for item in report.ContentSequence
               if case.finding is None)
    banner_text = [text for text, _ in banner_lines(prediction)]
    assert banner_text[0] == headline if case.flags else case.finding in banner_text[1]
    rgb = capture.pixel_array
    top = banner(prediction, rgb.shape[1]).shape[0]
    assert coloured(rgb[top:]) == (case.heatmap == HEATMAP_COLOUR)  # withheld: not asked
    for reason in meaning.reasons:  # the warning whole, wrapped, never cut
        assert "..." not in reason


def _names(item: object) -> list[str]:
    """Concept codes of an SR item and everything under it."""
    names = [item.ConceptNameCodeSequence[0].CodeValue]  # type: ignore[attr-defined]
    for child in getattr(item, "ContentSequence", []):
        names += _names(child)
    return names


def test_the_capture_banner_wraps_a_long_warning_instead_of_cutting_it() -> None:
    pytest.importorskip("highdicom")
    from PIL import ImageDraw, ImageFont

    from pneumoscan.dicom_node.heatmap_capture import _wrap

    font = ImageFont.load_default(size=12)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows = _wrap(ADULT_WARNING, font, 200)
    assert len(rows) > 1 and " ".join(rows) == ADULT_WARNING
    assert all(draw.textlength(row, font=font) <= 200 for row in rows)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def served_url() -> Iterator[str]:
    """The same app as :func:`api` (the real routes and page, the fake model), served by
    uvicorn on 127.0.0.1 in a thread, for the browser."""
    import socket
    import threading
    import time

    import uvicorn

    from pneumoscan.server import ServerSettings, create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app = create_app(ServerSettings(), predictor=CasePredictor())  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_renders_the_same(served_url: str, tmp_path: Path) -> None:
    """The same table through the page in Chromium, answered by the same app."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `make browser`")
    sync_api = pytest.importorskip("playwright.sync_api")
    files = []
    for index, case in enumerate(CASES):
        path = tmp_path / f"{case.name}.png"
        path.write_bytes(upload(index))
        files.append(path)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(served_url)
        page.set_input_files("#file-input", [str(path) for path in files])
        page.wait_for_function("() => document.querySelectorAll('#worklist-body tr.row-done, "
                               f"#worklist-body tr.row-error').length === {len(CASES)}",
                               timeout=60_000)
        for case, path in zip(CASES, files, strict=True):
            row = page.locator("#worklist-body tr", has_text=path.name)
            text = row.inner_text()
            if case.prediction is None:
                assert "Not analysed" in text
                continue
            assert (case.finding or "not validated" if case.model_output_shown
                    else case.finding or "out of scope") in text
            assert ("PNEUMONIA" in text) == (case.finding == "PNEUMONIA"
                                             or case.model_output_shown)
            assert all(flag in text.lower() for flag in case.flags)
            row.locator("button").click()
            page.wait_for_selector("#result:not([hidden])")
            assert page.is_visible("#scope-warning") == ("out of scope" in case.flags)
            assert page.is_visible("#population-warning") == ("adult" in case.flags)
            shown = page.is_visible("#label")
            assert shown == (case.finding is not None or case.model_output_shown)
            if shown:
                label_class = page.get_attribute("#label", "class") or ""
                assert ("muted" in label_class) == (case.finding is None)
                assert page.inner_text("#label") == (case.finding or "PNEUMONIA")
            assert page.is_visible("#cause") == (case.cause is not None)
            heat = page.locator('#heat-mode input[name="heat"]:checked').get_attribute("value")
            assert heat == ("overlay" if case.heatmap == HEATMAP_COLOUR else "off")
            assert page.is_visible("#heat-overlay") == (case.heatmap == HEATMAP_COLOUR)
            assert page.is_visible("#legend") == (case.heatmap == HEATMAP_COLOUR)
        browser.close()
    assert errors == []
