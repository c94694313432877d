"""The upload page in a real browser: Debian's Chromium driven by Playwright, against a real
``pneumoscan serve`` on 127.0.0.1.

Skipped with a message when /usr/bin/chromium (``make browser`` installs it) or the
playwright package is missing. Set ``PNEUMOSCAN_SCREENSHOT=docs/screenshot.png`` to also
save the result page there (how the README's screenshot is made).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 180  # importing torch and loading the model on a busy 2-core machine
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


def test_upload_shows_result_and_heat_map(browser, server_url: str, tmp_path: Path,
                                          shared_pneumonia_images: list[Path]) -> None:
    page = browser.new_page(viewport={"width": 900, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server_url + "/")
    assert "Decision support, not a diagnosis" in page.inner_text("#disclaimer")
    page.wait_for_function("document.getElementById('footer-model').textContent"
                           ".startsWith('model ')")

    # Keyboard: the first Tab stop is the file picker.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"

    page.set_input_files("#file-input", str(shared_pneumonia_images[0]))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    label = page.inner_text("#label")
    card = httpx.get(server_url + "/api/v1/model").json()
    assert label in card["class_names"]
    assert card["version"] in page.inner_text("#model-version")
    assert "threshold" in page.inner_text("#probability-text")
    fill = page.eval_on_selector("#bar-fill", "el => el.style.width")
    assert fill.endswith("%") and 0 <= float(fill[:-1]) <= 100
    cause_visible = page.is_visible("#cause")
    assert cause_visible == (label == card["class_names"][1])

    image = page.locator("#result-image")
    image.wait_for(state="visible")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.getElementById('result-image').naturalWidth") > 0
    page.evaluate("document.activeElement.blur()")
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    if target := os.environ.get("PNEUMOSCAN_SCREENSHOT"):
        shutil.copy(tmp_path / "result.png", target)
    assert (tmp_path / "result.png").stat().st_size > 10_000

    # The heat-map toggle works from the keyboard.
    page.focus("#heatmap-toggle")
    page.keyboard.press("Space")
    assert not page.is_checked("#heatmap-toggle")
    assert not image.get_attribute("src").startswith("data:image/png;base64,")
    page.keyboard.press("Space")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert errors == []


def test_bad_file_shows_a_readable_error(browser, server_url: str, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(server_url + "/")
    bad = tmp_path / "notes.txt"
    bad.write_text("not an X-ray\n")
    page.set_input_files("#file-input", str(bad))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "not a supported file" in error.inner_text()
    assert page.is_hidden("#result")
    page.screenshot(path=str(tmp_path / "error.png"))


def test_page_fits_a_phone(browser, server_url: str, dicom_dir: Path) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
    page.goto(server_url + "/")
    page.set_input_files("#file-input", str(dicom_dir / "cr_ap_256px_monochrome1.dcm"))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.locator("#result-image").wait_for(state="visible")
    assert page.is_hidden("#preview-image")  # browsers cannot show DICOM; no broken image
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # no sideways scrolling


def test_out_of_scope_image_shows_the_warning(browser, server_url: str,
                                              tmp_path: Path) -> None:
    from PIL import Image

    picture = Image.new("RGB", (160, 120), (200, 40, 40))
    picture.paste((30, 160, 30), (0, 0, 80, 120))
    picture.save(tmp_path / "photo.png")
    page = browser.new_page()
    page.goto(server_url + "/")
    page.set_input_files("#file-input", str(tmp_path / "photo.png"))
    warning = page.locator("#scope-warning")
    warning.wait_for(state="visible", timeout=60_000)
    assert "colour" in warning.inner_text()


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
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server_url + "/redoc", wait_until="domcontentloaded", timeout=DOCS_TIMEOUT_MS)
    page.get_by_text("Predict pneumonia on one chest X-ray").first.wait_for(
        timeout=DOCS_TIMEOUT_MS)
    assert "/api/v1/predict" in page.inner_text("body")
    assert errors == []
