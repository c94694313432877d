"""The upload page in a real browser: Debian's Chromium driven by Playwright, against a real
``pneumoscan serve`` on 127.0.0.1.

Skipped with a message when /usr/bin/chromium (``make browser`` installs it) or the
playwright package is missing. Screenshots go to each test's temporary folder; set
``PNEUMOSCAN_SCREENSHOTS=docs`` to also save them there (how the README's screenshots are
made): ``worklist.png``, ``study.png``, ``page.png``, ``phone-*.png``, ``adult.png``,
``out-of-scope.png`` and ``report.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 180  # importing torch and loading the model on a busy 2-core machine
#: The server's log file, by its URL (for the tests that check what is not in it).
SERVER_LOGS: dict[str, Path] = {}
DOCS_TIMEOUT_MS = 180_000  # /docs and /redoc: a megabyte or two of script to run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(shipped_model: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``pneumoscan serve`` of the shipped model in a child process; stopped after
    the module."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: run `make browser` (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: "
                        "pip install -e '.[dev]'")
    port = free_port()
    command = [sys.executable, "-m", "pneumoscan", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model", str(shipped_model)]
    log_path = tmp_path_factory.mktemp("server") / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVER_LOGS[url] = log_path
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"pneumoscan serve exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"pneumoscan serve did not start in {START_TIMEOUT_S} s:\n"
                            f"{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(server_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def screenshot(target, tmp_path: Path, name: str, **options: object) -> Path:
    """Save a screenshot of a page or of one element (a locator) in the test's folder, and
    in ``$PNEUMOSCAN_SCREENSHOTS`` when set."""
    page = getattr(target, "page", target)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    path = tmp_path / name
    target.screenshot(path=str(path), animations="disabled", **options)
    assert path.stat().st_size > 5_000
    if folder := os.environ.get("PNEUMOSCAN_SCREENSHOTS"):
        shutil.copy(path, Path(folder) / name)
    return path


def open_page(browser, server_url: str, width: int = 1280, height: int = 900, **options):
    """A fresh page of the app; ``page.errors`` collects uncaught script errors."""
    page = browser.new_page(viewport={"width": width, "height": height}, **options)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(server_url + "/")
    page.wait_for_function("() => document.getElementById('footer-model').textContent"
                           ".startsWith('model ')")
    return page


def wait_analysed(page, count: int) -> None:
    """Wait until ``count`` worklist rows have a result or an error."""
    page.wait_for_function(
        f"() => document.querySelectorAll('#worklist-body tr.row-done, #worklist-body "
        f"tr.row-error').length === {count}", timeout=120_000)


def row_texts(page) -> list[str]:
    return page.locator("#worklist-body tr").all_inner_texts()


def open_row(page, name: str) -> None:
    page.locator("#worklist-body tr", has_text=name).locator("button.open-study").click()
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function(
        f"() => document.getElementById('study-name').textContent === {name!r}")
    wait_drawn(page)


def upload_one(page, path: Path) -> None:
    """Choose one file; wait until its study is open and drawn."""
    page.set_input_files("#file-input", str(path))
    wait_study(page)


def wait_study(page) -> None:
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    wait_drawn(page)


def wait_drawn(page) -> None:
    """Wait until the study's canvas holds the radiograph, drawn as the view now stands."""
    page.wait_for_function(f"() => document.getElementById('image-canvas').width > 1 && "
                           f"{MEAN_LEVEL} > 0")
    wait_frame(page)


def wait_frame(page) -> None:
    """Wait for the page's next animation frame: the canvas is drawn in one, so a draw that a
    change asked for before this call has happened when it returns."""
    page.evaluate("new Promise((done) => requestAnimationFrame(() => done(true)))")


#: Mean red level of the study canvas, in the page (a JavaScript expression).
MEAN_LEVEL = ("(() => { const c = document.getElementById('image-canvas');"
              " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
              " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i];"
              " return s / (d.length / 4); })()")


def colour_photo(path: Path) -> Path:
    """A colour picture, nothing like a radiograph (out of scope)."""
    picture = Image.new("RGB", (320, 240), (200, 40, 40))
    picture.paste((30, 160, 30), (0, 0, 160, 240))
    picture.paste((40, 60, 200), (160, 120, 320, 240))
    picture.save(path)
    return path


def test_one_file_opens_its_study(browser, server_url: str, tmp_path: Path,
                                  shared_pneumonia_images: list[Path]) -> None:
    page = open_page(browser, server_url)
    assert "Decision support, not a diagnosis" in page.inner_text("#disclaimer")

    # Keyboard: the first Tab stop is the file picker.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"

    upload_one(page, shared_pneumonia_images[0])
    label = page.inner_text("#label")
    card = httpx.get(server_url + "/api/v1/model").json()
    assert label in card["class_names"]
    assert card["version"] in page.inner_text("#model-version")
    assert "threshold" in page.inner_text("#probability-text")
    assert "Decision support, not a diagnosis" in page.inner_text("#result")
    fill = page.eval_on_selector("#bar-fill", "el => el.style.width")
    assert fill.endswith("%") and 0 <= float(fill[:-1]) <= 100
    assert page.is_visible("#cause") == (label == card["class_names"][1])
    assert page.is_hidden("#scope-warning") and page.is_hidden("#population-warning")
    assert "not DICOM" in page.inner_text("#study-facts")
    assert "224 \u00d7 224 px" in page.inner_text("#study-facts")
    assert re.search(r"\d+ KB", page.inner_text("#worklist-body"))  # never "0.00 MB"
    assert "Analysed 1 of 1 file" in page.inner_text("#progress-text")

    # The heat map: an overlay with a legend, over a square pane (the image is square).
    overlay = page.locator("#heat-overlay")
    assert overlay.is_visible() and page.is_visible("#legend")
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.getElementById('heat-overlay').naturalWidth") > 0
    box = page.locator("#pane-main").bounding_box()
    assert abs(box["width"] - box["height"]) <= 2
    screenshot(page.locator("#result"), tmp_path, "study.png")
    screenshot(page, tmp_path, "page.png", full_page=True)

    # Opacity slider and heat-map modes, from the keyboard.
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    assert overlay.evaluate("el => el.style.opacity") == "0.8"
    page.focus("input[name=heat][value=overlay]")
    page.keyboard.press("ArrowRight")  # radio group: next option, side by side
    assert page.is_checked("input[name=heat][value=side]")
    assert page.is_visible("#pane-side") and page.is_hidden("#heat-overlay")
    side = page.locator("#pane-side").bounding_box()
    main = page.locator("#pane-main").bounding_box()
    assert side["x"] > main["x"] + main["width"] - 1  # beside it, not below
    page.check("input[name=heat][value=off]")
    assert page.is_hidden("#pane-side") and page.is_hidden("#heat-overlay")

    # Screen readers: every control has a name, the image says what it shows.
    unnamed = page.evaluate(
        "() => [...document.querySelectorAll('input, button, select')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
        " && !e.textContent.trim()).map(e => e.id || e.name)")
    assert unnamed == []
    description = page.get_attribute("#pane-main", "aria-label")
    assert shared_pneumonia_images[0].name in description and "zoom 100%" in description
    assert page.errors == []


def test_worklist_ranks_files_and_lists_the_broken_one(
        browser, server_url: str, tmp_path: Path, shared_pneumonia_images: list[Path],
        shared_normal_images: list[Path], dicom_dir: Path) -> None:
    broken = tmp_path / "notes.txt"
    broken.write_text("not an X-ray\n")
    files = [shared_normal_images[0], broken, shared_pneumonia_images[1]]
    expected = {path.name: httpx.post(server_url + "/api/v1/predict", files={
        "file": (path.name, path.read_bytes())}).json() for path in files if path != broken}

    page = open_page(browser, server_url)
    page.set_input_files("#file-input", [str(path) for path in files])
    wait_analysed(page, 3)
    assert "Analysed 3 of 3 files; 1 could not be read" in page.inner_text("#progress-text")
    assert page.is_hidden("#result")  # several files: the user picks one to open

    rows = row_texts(page)
    ranked = sorted(expected, key=lambda name: -expected[name]["probability"])
    assert [next(name for name in expected if name in row) for row in rows[:2]] == ranked
    for row, name in zip(rows, ranked, strict=False):
        assert f"{100 * expected[name]['probability']:.1f}%" in row
        assert expected[name]["label"] in row
    assert broken.name in rows[2] and "not a supported file" in rows[2]
    error_row = page.locator("#worklist-body tr.row-error")
    assert error_row.locator("img").count() == 0  # no broken-image icon
    assert page.locator("#worklist-body tr.row-done img.thumb").count() == 2
    assert page.evaluate("[...document.querySelectorAll('#worklist-body img.thumb')]"
                         ".every(img => img.complete && img.naturalWidth > 0)")

    # CSV export, in the worklist's order.
    with page.expect_download() as download_info:
        page.click("#export-csv")
    csv_path = tmp_path / "worklist.csv"
    download_info.value.save_as(csv_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("rank,file,size_bytes,status,applicable,label,probability,"
                               "threshold")
    assert [line.split(",")[1] for line in lines[1:]] == [*ranked, broken.name]
    assert lines[3].split(",")[3] == "error"

    # Opening a row from the keyboard.
    page.locator("#worklist-body tr", has_text=ranked[0]).locator("button").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#result:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "result-title"
    assert ranked[0] in page.inner_text("#study-name")
    assert page.locator("#worklist-body tr.open").inner_text().count(ranked[0]) == 1

    # A second batch joins the list and is ranked with it: an adult film and a photo.
    photo = colour_photo(tmp_path / "holiday_photo.png")
    page.set_input_files("#file-input", [str(dicom_dir / "cr_ap_256px_monochrome1.dcm"),
                                         str(photo), str(shared_pneumonia_images[2])])
    wait_analysed(page, 6)
    rows = row_texts(page)
    assert "out of scope" in rows[-2] and photo.name in rows[-2]
    assert broken.name in rows[-1]
    screenshot(page.locator("#worklist-section"), tmp_path, "worklist.png")
    assert page.errors == []


def test_zoom_pan_and_window_level_change_the_view(
        browser, server_url: str, tmp_path: Path,
        shared_pneumonia_images: list[Path]) -> None:
    page = open_page(browser, server_url)
    upload_one(page, shared_pneumonia_images[0])
    pane = page.locator("#pane-main")
    before = pane.screenshot()
    level_before = page.evaluate(MEAN_LEVEL)

    page.click("#zoom-in")
    page.click("#zoom-in")
    assert page.inner_text("#zoom-level") == "156%"
    assert "scale(1.5625)" in page.eval_on_selector("#stage-main", "el => el.style.transform")
    zoomed = pane.screenshot()
    assert zoomed != before

    # Pan by dragging, in pan mode.
    page.check("input[name=drag][value=pan]")
    box = pane.bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    transform = page.eval_on_selector("#stage-main", "el => el.style.transform")
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] + 60, centre[1] + 40, steps=4)
    page.mouse.up()
    assert page.eval_on_selector("#stage-main", "el => el.style.transform") != transform
    assert pane.screenshot() != zoomed

    # The keyboard: 0 fits, + zooms.
    pane.focus()
    page.keyboard.press("0")
    assert page.inner_text("#zoom-level") == "100%"
    page.keyboard.press("+")
    assert page.inner_text("#zoom-level") == "125%"
    page.click("#zoom-fit")

    # Window/level by dragging: narrower window, higher level, a darker image.
    page.check("input[name=drag][value=window]")
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] - 80, centre[1] + 60, steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => {MEAN_LEVEL} < {level_before} - 5")
    assert page.input_value("#window") == "175" and page.input_value("#level") == "188"
    assert pane.screenshot() != before
    page.click("#wl-reset")
    page.wait_for_function(f"() => Math.abs({MEAN_LEVEL} - {level_before}) < 1")
    assert page.errors == []


def test_report_downloads_and_prints_on_one_page(
        browser, server_url: str, tmp_path: Path,
        shared_pneumonia_images: list[Path]) -> None:
    page = open_page(browser, server_url)
    upload_one(page, shared_pneumonia_images[0])
    label = page.inner_text("#label")
    card = httpx.get(server_url + "/api/v1/model").json()

    with page.expect_download() as download_info:
        page.click("#download-report")
    download = download_info.value
    assert re.fullmatch(r"pneumoscan-report-person\w+-\d{8}-\d{4}\.html",
                        download.suggested_filename)
    report = tmp_path / "report.html"
    download.save_as(report)
    html = report.read_text()
    for needed in ("Decision support, not a diagnosis", label, "Threshold",
                   card["name"], card["version"], "Report made",
                   shared_pneumonia_images[0].name, "In scope"):
        assert needed in html, needed
    assert html.count('src="data:image/png;base64,') == 2  # the image and its heat map
    assert not re.search(r"(src|href)=\"https?:", html)  # self-contained

    # It reads on its own and prints on one A4 page.
    viewer = browser.new_page(viewport={"width": 900, "height": 1200})
    viewer.set_content(html)
    assert viewer.evaluate("[...document.images].every(img => img.naturalWidth > 0)")
    screenshot(viewer, tmp_path, "report.png", full_page=True)
    pdf = viewer.pdf(format="A4", print_background=True)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1

    # Print from the page: only the report is printed.
    page.evaluate("window.print = () => { window.printed = true; }")
    page.click("#print-report")
    assert page.evaluate("window.printed") is True
    page.emulate_media(media="print")
    assert page.is_hidden("#page") and page.is_visible("#print-area .report")
    assert label in page.inner_text("#print-area")
    assert page.errors == []


def test_bad_file_shows_a_readable_error(browser, server_url: str, tmp_path: Path) -> None:
    page = open_page(browser, server_url)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an X-ray\n")
    page.set_input_files("#file-input", str(bad))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "not a supported file" in error.inner_text()
    assert page.is_hidden("#result")
    assert page.locator("img[src='']").count() == 0
    assert page.locator("#worklist-body tr.row-error img").count() == 0
    assert "13 bytes" in page.inner_text("#worklist-body")


def test_tiny_image_is_refused_readably(browser, server_url: str, tmp_path: Path) -> None:
    Image.new("L", (40, 40), 128).save(tmp_path / "icon.png")
    page = open_page(browser, server_url)
    page.set_input_files("#file-input", str(tmp_path / "icon.png"))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "too small" in error.inner_text()
    assert "too small" in page.inner_text("#worklist-body tr.row-error")
    assert page.is_hidden("#result")


def test_out_of_scope_leads_and_shows_no_finding(browser, server_url: str,
                                                 tmp_path: Path) -> None:
    page = open_page(browser, server_url)
    page.set_input_files("#file-input", str(colour_photo(tmp_path / "photo.png")))
    warning = page.locator("#scope-warning")
    warning.wait_for(state="visible", timeout=60_000)
    wait_drawn(page)
    assert "colour" in warning.inner_text() and "no result" in warning.inner_text()
    assert page.is_hidden("#finding") and page.is_hidden("#label")
    assert page.is_hidden("#cause") and page.is_hidden("#heat-overlay")
    # First in the study: above the facts and the image.
    assert warning.bounding_box()["y"] < page.locator("#study-facts").bounding_box()["y"]
    assert "no result (out of scope)" in page.inner_text("#worklist-body")
    assert "Decision support, not a diagnosis" in page.inner_text("#result")
    screenshot(page, tmp_path, "out-of-scope.png", full_page=True)
    assert page.errors == []


@pytest.mark.parametrize("source", ["dicom", "nih"])
def test_adult_warning_comes_first_and_the_label_is_muted(
        browser, server_url: str, tmp_path: Path, dicom_dir: Path, source: str) -> None:
    adult = (dicom_dir / "cr_ap_256px_monochrome1.dcm" if source == "dicom"
             else sorted((dicom_dir.parent / "adult_nih" / "PNEUMONIA").glob("*.jpeg"))[0])
    answer = httpx.post(server_url + "/api/v1/predict",
                        files={"file": (adult.name, adult.read_bytes())}).json()
    assert answer["population"] == "adult" and answer["population_warning"]

    page = open_page(browser, server_url)
    page.set_input_files("#file-input", str(adult))
    warning = page.locator("#population-warning")
    warning.wait_for(state="visible", timeout=60_000)
    wait_drawn(page)
    assert answer["population_warning"].rstrip(".") in warning.inner_text()
    assert "Not validated for this patient" in warning.inner_text()
    label = page.locator("#label")
    assert label.is_visible()
    # Above the result, and the result does not look like a finding.
    assert warning.bounding_box()["y"] < label.bounding_box()["y"]
    assert page.is_visible("#label-caption")
    assert "not validated" in page.inner_text("#label-caption")
    assert "muted" in label.get_attribute("class")
    assert "positive" not in label.get_attribute("class")
    size = float(label.evaluate("el => getComputedStyle(el).fontSize")[:-2])
    assert size < 18  # the confident label is 1.2rem = 19.2 px
    assert page.is_hidden("#cause")
    assert "adult: not validated" in page.inner_text("#worklist-body")
    assert "(not validated)" in page.inner_text("#worklist-body")
    if source == "dicom":
        assert "CR" in page.inner_text("#study-facts")
        screenshot(page, tmp_path, "adult.png", full_page=True)
    # The report carries the warning and the same muted, captioned label.
    with page.expect_download() as download_info:
        page.click("#download-report")
    download_info.value.save_as(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Not applicable:" in html and "not a finding" in html
    assert 'class="r-label muted"' in html
    assert page.errors == []


@pytest.mark.parametrize("what", ["worklist", "study"])
def test_page_fits_a_phone(browser, server_url: str, tmp_path: Path, dicom_dir: Path,
                           shared_pneumonia_images: list[Path], what: str) -> None:
    page = open_page(browser, server_url, 375, 740, is_mobile=True, has_touch=True)
    files = ([dicom_dir / "cr_ap_256px_monochrome1.dcm"] if what == "study"
             else [dicom_dir / "cr_ap_256px_monochrome1.dcm", *shared_pneumonia_images[:2]])
    page.set_input_files("#file-input", [str(path) for path in files])
    wait_analysed(page, len(files))
    if what == "study":
        wait_study(page)
        box = page.locator("#pane-main").bounding_box()
        assert box["width"] <= 375 and abs(box["width"] - box["height"]) <= 2
        pinch_out(page)
        assert page.inner_text("#zoom-level") not in ("100%", "")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # no sideways scrolling
    screenshot(page, tmp_path, f"phone-{what}.png", full_page=True)
    assert page.errors == []


def pinch_out(page) -> None:
    """Two fingers on the study's image, moved apart (Chromium's touch input, over CDP)."""
    page.locator("#pane-main").scroll_into_view_if_needed()
    box = page.locator("#pane-main").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    for kind, spread in (("touchStart", 20), ("touchMove", 40), ("touchMove", 60),
                         ("touchMove", 80), ("touchEnd", 0)):
        points = [] if kind == "touchEnd" else [{"x": x - spread, "y": y, "id": 0},
                                                {"x": x + spread, "y": y, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def test_api_docs_render_the_predict_operation(browser, server_url: str) -> None:
    """Swagger UI at /docs reads FastAPI's OpenAPI 3.1 and lists ``POST /api/v1/predict``,
    with its summary, from the packaged assets only."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(server_url) else None)
    # Generous timeouts: a 1.5 MB script to parse on a busy 2-core machine.
    page.goto(server_url + "/docs", wait_until="domcontentloaded", timeout=DOCS_TIMEOUT_MS)
    operation = page.locator("#operations-default-predict_api_v1_predict_post")
    operation.wait_for(state="visible", timeout=DOCS_TIMEOUT_MS)
    assert "/api/v1/predict" in operation.inner_text()
    assert "Predict pneumonia on one chest X-ray" in operation.inner_text()
    assert "Unable to render this definition" not in page.inner_text("body")
    operation.locator(".opblock-summary").first.click()  # open it: the request body shows
    page.get_by_text("multipart/form-data").first.wait_for(timeout=DOCS_TIMEOUT_MS)
    assert errors == [] and outside == []


def test_redoc_renders_the_predict_operation(browser, server_url: str) -> None:
    """ReDoc at /redoc, from this server only: no request leaves it (its bundle names a CDN
    logo, which is served here without it)."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith((server_url, "blob:" + server_url)) else None)
    page.goto(server_url + "/redoc", wait_until="domcontentloaded", timeout=DOCS_TIMEOUT_MS)
    page.get_by_text("Predict pneumonia on one chest X-ray").first.wait_for(
        timeout=DOCS_TIMEOUT_MS)
    assert "/api/v1/predict" in page.inner_text("body")
    page.wait_for_load_state("networkidle", timeout=DOCS_TIMEOUT_MS)
    assert errors == [] and outside == []


#: The shared 15-bit JPEG 2000 CR (1841 x 1955, MONOCHROME1) and the identity in its header.
FULL_DEPTH_FILM = "cr_nema_pa_monochrome1_jpeg2000.dcm"
FILM_IDENTITY = {"name": "COMPRESSEDSAMPLES, RG1", "patient_id": "9RG1",
                 "birth_date": "1940-03-05", "sex": "F", "accession_number": "exam Number",
                 "study_date": "2004-08-26", "study_description": "THORAX"}

#: How many distinct grey levels the study canvas shows (a JavaScript expression).
GREY_LEVELS = ("(() => { const c = document.getElementById('image-canvas');"
               " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
               " const seen = new Set(); for (let i = 0; i < d.length; i += 4) seen.add(d[i]);"
               " return seen.size; })()")


def test_reading_room_at_desktop_size(browser, server_url: str, tmp_path: Path,
                                      dicom_dir: Path) -> None:
    """At 1440 x 900 the radiograph is in view, whole, once one file is analysed; the
    worklist is a side panel; window/level works on the DICOM's full depth, with the file's
    window as the first preset and a numeric readout; invert, rotate, full screen, reset
    and side by side across the width."""
    page = open_page(browser, server_url, 1440, 900)
    upload_one(page, dicom_dir / FULL_DEPTH_FILM)
    pane = page.locator("#pane-main").bounding_box()
    assert pane["y"] >= 0 and pane["y"] + pane["height"] <= 900  # whole, without scrolling
    assert pane["height"] >= 450
    side = page.locator("#side").bounding_box()
    assert side["x"] + side["width"] <= pane["x"]  # the worklist beside the study
    assert page.locator("#result").bounding_box()["y"] < 120  # the study at the top

    # The file's own window, with its numbers; the values are the DICOM's, not 8-bit.
    assert page.inner_text("#wl-readout") == "W 30000 · L 15000"
    assert "File window 1 (W 30000, L 15000)" in page.inner_text("#wl-preset")
    assert "Full depth" in page.inner_text("#wl-depth")
    assert page.evaluate("document.getElementById('image-canvas').width") == 964  # 1024 px
    # A window 1/30 of the file's: a full-depth image still shows ~255 grey levels in it;
    # an 8-bit rendering of the file's window would have about 9 left.
    page.evaluate(
        "(() => { const w = document.getElementById('window');"
        " w.value = '1000'; w.dispatchEvent(new Event('input')); })()")
    page.wait_for_function("() => document.getElementById('wl-readout').textContent"
                           ".startsWith('W 1000 ')")
    page.wait_for_function(f"() => {GREY_LEVELS} > 128")
    assert page.input_value("#wl-preset") == "custom"
    page.select_option("#wl-preset", "0")
    page.wait_for_function("() => document.getElementById('wl-readout').textContent"
                           " === 'W 30000 · L 15000'")

    # Invert (the I key), rotate, full screen, reset.
    wait_frame(page)  # the readout changes at once, the canvas in the next frame
    mean = page.evaluate(MEAN_LEVEL)
    assert mean > 1
    page.locator("#pane-main").focus()
    page.keyboard.press("i")
    page.wait_for_function(f"() => Math.abs({MEAN_LEVEL} - {255 - mean}) < 2")
    assert page.get_attribute("#invert", "aria-pressed") == "true"
    before = page.locator("#pane-main").bounding_box()
    page.keyboard.press("r")
    turned = page.locator("#pane-main").bounding_box()
    assert "rotate(90deg)" in page.eval_on_selector("#image-canvas", "el => el.style.transform")
    assert abs(turned["width"] / turned["height"] - before["height"] / before["width"]) < 0.02
    screenshot(page, tmp_path, "reading-room-turned.png")
    page.click("#fullscreen")
    page.wait_for_function("() => document.fullscreenElement && "
                           "document.fullscreenElement.id === 'study-image'")
    page.evaluate("document.exitFullscreen()")
    page.wait_for_function("() => !document.fullscreenElement")
    page.click("#wl-reset")
    page.wait_for_function(f"() => Math.abs({MEAN_LEVEL} - {mean}) < 1")
    assert page.eval_on_selector("#image-canvas", "el => el.style.transform") == ""
    assert page.get_attribute("#invert", "aria-pressed") == "false"
    assert page.inner_text("#wl-readout") == "W 30000 · L 15000"
    for key in ("I", "R", "F", "Home", "1"):
        assert key in page.inner_text("#viewer-help") or key in page.inner_html("#viewer-help")
    screenshot(page, tmp_path, "reading-room.png")

    # Side by side across the width: the worklist steps aside, the panes share the page.
    page.check("input[name=heat][value=side]")
    assert page.is_hidden("#side")
    main, beside = (page.locator(f"#pane-{p}").bounding_box() for p in ("main", "side"))
    assert main["width"] + beside["width"] >= 0.6 * 1440
    assert beside["y"] + beside["height"] <= 900
    screenshot(page, tmp_path, "side-by-side.png")
    page.check("input[name=heat][value=overlay]")
    assert page.is_visible("#side")
    assert page.errors == []


def test_identity_on_screen_and_in_the_report_never_in_the_log(
        browser, server_url: str, tmp_path: Path, dicom_dir: Path) -> None:
    """A DICOM's patient identity is in the study header, its worklist row and the report;
    in the CSV only when asked for; and nowhere in the server's log."""
    page = open_page(browser, server_url, 1440, 900)
    upload_one(page, dicom_dir / FULL_DEPTH_FILM)
    header = page.inner_text("#identity")
    for value in FILM_IDENTITY.values():
        assert value in header, value
    assert page.is_hidden("#identity-none")
    row = page.inner_text("#worklist-body tr.open")
    assert FILM_IDENTITY["name"] in row and "ID 9RG1" in row

    with page.expect_download() as download_info:
        page.click("#download-report")
    download_info.value.save_as(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    for value in FILM_IDENTITY.values():
        assert value in html, value
    report = browser.new_page(viewport={"width": 900, "height": 1200})
    report.set_content(html)
    pdf = report.pdf(format="A4", print_background=True)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1  # still one page
    screenshot(report, tmp_path, "report-identity.png", full_page=True)
    page.evaluate("window.print = () => {}")
    page.click("#print-report")
    assert "9RG1" in page.inner_text("#print-area")

    def csv(identifiers: bool) -> str:
        page.set_checked("#csv-identifiers", identifiers)
        with page.expect_download() as download_info:
            page.click("#export-csv")
        path = tmp_path / f"worklist-{identifiers}.csv"
        download_info.value.save_as(path)
        return path.read_text()

    plain = csv(identifiers=False)
    assert "9RG1" not in plain and "COMPRESSEDSAMPLES" not in plain
    assert "1940-03-05" not in plain and "exam Number" not in plain
    marked = csv(identifiers=True)
    assert "patient_name,patient_id,birth_date" in marked.splitlines()[0]
    assert "9RG1" in marked and "COMPRESSEDSAMPLES" in marked

    log = SERVER_LOGS[server_url].read_text()
    assert "POST /api/v1/predict" in log  # the request was logged ...
    for value in ("9RG1", "COMPRESSEDSAMPLES", "RG1", "1940-03-05", "19400305",
                  "exam Number", FULL_DEPTH_FILM):
        assert value not in log, value  # ... and nothing of who it was about
    assert page.errors == []


def test_a_jpeg_report_says_it_has_no_identity_and_takes_a_typed_one(
        browser, server_url: str, tmp_path: Path,
        shared_pneumonia_images: list[Path]) -> None:
    page = open_page(browser, server_url, 1440, 900)
    upload_one(page, shared_pneumonia_images[0])
    assert page.is_visible("#identity-none")
    assert "carries none" in page.inner_text("#identity-none")
    assert page.inner_text("#identity") == ""

    with page.expect_download() as download_info:
        page.click("#download-report")
    download_info.value.save_as(tmp_path / "blank.html")
    blank = (tmp_path / "blank.html").read_text()
    assert "carries no patient identity" in blank and 'class="r-blank"' in blank

    page.fill("#typed-identity", "DOE, Jane · 0042 · 2021-02-03")
    with page.expect_download() as download_info:
        page.click("#download-report")
    download_info.value.save_as(tmp_path / "typed.html")
    typed = (tmp_path / "typed.html").read_text()
    assert "DOE, Jane · 0042 · 2021-02-03" in typed
    assert "typed by the user, not from the file" in typed
    assert "carries no patient identity" in typed
    assert "DOE" not in SERVER_LOGS[server_url].read_text()  # typed here, never sent
    assert page.errors == []
