// pneumoscan page: analyse one or many X-rays, rank them in a worklist, open a study with
// zoom, pan, window/level and the heat map, and download or print a one-page report.
// Plain JavaScript, no libraries: the page must work with no internet. Everything about
// the files stays in this tab: nothing is stored on the server or in the browser's storage.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    input: $("file-input"), dropzone: $("dropzone"), error: $("error"),
    progress: $("progress"), progressBar: $("progress-bar"), progressText: $("progress-text"),
    worklistSection: $("worklist-section"), worklistBody: $("worklist-body"),
    exportCsv: $("export-csv"), clearList: $("clear-list"),
    result: $("result"), resultTitle: $("result-title"), studyName: $("study-name"),
    scopeWarning: $("scope-warning"), scopeReason: $("scope-reason"),
    populationWarning: $("population-warning"), populationText: $("population-text"),
    populationReason: $("population-reason"), finding: $("finding"),
    labelCaption: $("label-caption"), label: $("label"), probabilityText: $("probability-text"),
    bar: $("bar"), barFill: $("bar-fill"), barThreshold: $("bar-threshold"),
    cause: $("cause"), causeText: $("cause-text"), facts: $("study-facts"),
    heatMode: $("heat-mode"), opacity: $("opacity"), opacityControl: $("opacity-control"),
    zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomFit: $("zoom-fit"),
    zoomLevel: $("zoom-level"), wlWindow: $("window"), wlLevel: $("level"), wlReset: $("wl-reset"),
    viewer: $("viewer"), paneMain: $("pane-main"), paneSide: $("pane-side"),
    stageMain: $("stage-main"), stageSide: $("stage-side"),
    canvas: $("image-canvas"), canvasSide: $("image-canvas-side"),
    heatOverlay: $("heat-overlay"), heatSide: $("heat-side"), legend: $("legend"),
    downloadReport: $("download-report"), printReport: $("print-report"),
    printArea: $("print-area"), modelVersion: $("model-version"), elapsed: $("elapsed"),
    footerModel: $("footer-model"),
  };

  const PARALLEL = 2; // uploads in flight at once (the server runs two predictions at a time)
  const THUMB = 56; // thumbnail side, CSS pixels
  const MAX_ZOOM = 8;
  let maxUploadBytes = 25 * 1024 * 1024;
  let modelCard = null; // /api/v1/model, for the report
  let items = []; // every file of this tab, in the order chosen
  let nextId = 1;
  let openId = null; // the study shown
  const queue = [];
  let running = 0;
  let run = { total: 0, done: 0, errors: 0 }; // the progress count of the files chosen last

  // --- formatting ------------------------------------------------------------------------

  const percent = (p) => (100 * p).toFixed(1) + "%";

  function formatSize(bytes) {
    if (bytes < 1024) return bytes + (bytes === 1 ? " byte" : " bytes");
    if (bytes < 1024 * 1024) return Math.max(1, Math.round(bytes / 1024)) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  const sentence = (text) => String(text || "").trim().replace(/[.\s]+$/, "");

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function showError(message) {
    els.error.textContent = message;
    show(els.error, Boolean(message));
  }

  // --- what a result means -----------------------------------------------------------------
  // The population fields (population, population_reason, population_warning, applicable)
  // come with the population check; an older server leaves them out, and then nothing is
  // flagged beyond the scope check.

  function populationWarning(result) {
    return typeof result.population_warning === "string" ? result.population_warning : "";
  }

  function isApplicable(result) {
    if (typeof result.applicable === "boolean") return result.applicable;
    return result.in_scope && !populationWarning(result);
  }

  function isPositive(result) { return result.probability >= result.threshold; }

  // Worklist groups: validated results, then outside the validated population, then out of
  // scope, then files still being analysed, then files that could not be read.
  function group(item) {
    if (item.state === "error") return 4;
    if (item.state !== "done") return 3;
    if (!item.result.in_scope) return 2;
    return isApplicable(item.result) ? 0 : 1;
  }

  function ranked() {
    return items.slice().sort((a, b) => group(a) - group(b) ||
      (group(a) <= 2 ? b.result.probability - a.result.probability : 0) || a.id - b.id);
  }

  function flagsOf(item) {
    const flags = [];
    if (item.state !== "done") return flags;
    const result = item.result;
    if (!result.in_scope) return [["bad", "out of scope"]];
    if (populationWarning(result)) {
      flags.push(["warn", (result.population === "adult" ? "adult" : "population") +
                          ": not validated"]);
    } else if (result.population === "unknown") {
      flags.push(["muted", "age group unknown"]);
    }
    return flags;
  }

  // --- uploads -----------------------------------------------------------------------------

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    showError("");
    if (run.done >= run.total) run = { total: 0, done: 0, errors: 0 };
    for (const file of files) {
      // One file chosen: open it once analysed, as a single-image page would.
      const item = { id: nextId++, file, name: file.name, size: file.size, state: "queued",
                     result: null, error: "", thumb: null, image: null,
                     openWhenDone: files.length === 1 };
      items.push(item);
      run.total += 1;
      const refusal = file.size === 0
        ? "this file is empty (0 bytes); choose a JPEG, PNG or DICOM chest X-ray"
        : file.size > maxUploadBytes
          ? "this file is " + formatSize(file.size) + "; the limit is " +
            formatSize(maxUploadBytes) + ": export a smaller image"
          : "";
      if (refusal) finish(item, null, refusal);
      else queue.push(item);
    }
    renderWorklist();
    updateProgress();
    pump();
  }

  function pump() {
    while (running < PARALLEL && queue.length) {
      const item = queue.shift();
      running += 1;
      item.state = "analysing";
      analyse(item).finally(() => { running -= 1; pump(); });
    }
  }

  async function analyse(item) {
    const form = new FormData();
    form.append("file", item.file, item.name);
    let response, body;
    try {
      response = await fetch("/api/v1/predict?heatmap=true&image=true",
                             { method: "POST", body: form });
      body = await response.json().catch(() => null);
    } catch (err) {
      finish(item, null, "could not reach the server; is pneumoscan still running?");
      return;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail
        : "the server answered " + response.status;
      finish(item, null, detail);
      return;
    }
    finish(item, body, "");
  }

  function finish(item, result, error) {
    if (!items.includes(item)) return; // cleared while in flight
    item.state = result ? "done" : "error";
    item.result = result;
    item.error = error;
    run.done += 1;
    if (!result) run.errors += 1;
    if (result) {
      item.image = "data:image/png;base64," + result.image_png;
      makeThumbnail(item);
    }
    renderWorklist();
    updateProgress();
    if (item.openWhenDone) openStudy(item.id, false);
  }

  function updateProgress() {
    show(els.progress, run.total > 0);
    els.progressBar.max = Math.max(1, run.total);
    els.progressBar.value = run.done;
    els.progressText.textContent = run.done < run.total
      ? "Analysed " + run.done + " of " + run.total + " files…"
      : "Analysed " + run.total + " of " + run.total + (run.total === 1 ? " file" : " files") +
        (run.errors ? "; " + run.errors + " could not be read." : ".");
  }

  function makeThumbnail(item) {
    const image = new Image();
    image.onload = () => {
      const scale = (2 * THUMB) / Math.max(image.naturalWidth, image.naturalHeight);
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
      canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
      item.thumb = canvas.toDataURL("image/png");
      renderWorklist();
    };
    image.src = item.image;
  }

  // --- the worklist --------------------------------------------------------------------------

  function renderWorklist() {
    show(els.worklistSection, items.length > 0);
    const rows = ranked().map((item, index) => worklistRow(item, index + 1));
    els.worklistBody.replaceChildren(...rows);
  }

  function worklistRow(item, rank) {
    const done = item.state === "done";
    const result = item.result;
    const row = el("tr", { class: "row-" + item.state + (item.id === openId ? " open" : ""),
                           "data-id": String(item.id) });
    if (item.id === openId) row.setAttribute("aria-current", "true");
    const thumb = item.thumb
      ? el("img", { class: "thumb", src: item.thumb, alt: "" })
      : el("span", { class: "thumb thumb-empty", "aria-hidden": "true",
                     text: item.state === "error" ? "no image" : "…" });
    const name = done
      ? el("button", { type: "button", class: "link open-study" }, item.name)
      : el("span", { class: "name" }, item.name);
    let label, probability;
    if (item.state === "error") {
      label = el("span", { class: "error-text" }, "Not analysed: " + sentence(item.error));
      probability = "";
    } else if (!done) {
      label = el("span", { class: "muted" }, item.state === "queued" ? "waiting…" : "analysing…");
      probability = "";
    } else if (!result.in_scope) {
      label = el("span", { class: "muted" }, "no result (out of scope)");
      probability = el("span", { class: "muted" }, "n/a");
    } else if (!isApplicable(result)) {
      label = el("span", { class: "unvalidated" }, result.label + " (not validated)");
      probability = el("span", { class: "unvalidated" }, percent(result.probability));
    } else {
      label = el("strong", { class: isPositive(result) ? "positive" : "negative" },
                 result.label);
      probability = percent(result.probability);
    }
    const flags = el("span", { class: "flags" },
      ...flagsOf(item).map(([kind, text]) => el("span", { class: "flag " + kind }, text)));
    row.append(
      el("td", { class: "rank" }, String(rank)), el("td", { class: "thumb-cell" }, thumb),
      el("td", { class: "file" }, name, el("span", { class: "size" }, formatSize(item.size))),
      el("td", { class: "result-cell" }, label), el("td", { class: "num" }, probability),
      el("td", { class: "flags-cell" }, flags));
    return row;
  }

  els.worklistBody.addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (!row) return;
    const item = items.find((i) => i.id === Number(row.dataset.id));
    if (item && item.state === "done") openStudy(item.id, true);
  });

  function exportCsv() {
    const columns = ["rank", "file", "size_bytes", "status", "label", "probability",
      "threshold", "in_scope", "scope_reason", "population", "population_warning",
      "applicable", "cause", "cause_probability", "modality", "view", "study_date",
      "model", "error"];
    const lines = [columns.join(",")];
    ranked().forEach((item, index) => {
      const r = item.result || {};
      const shown = item.state === "done" && r.in_scope; // no numbers for out-of-scope images
      const study = r.study || {};
      const values = [index + 1, item.name, item.size,
        item.state === "done" ? "ok" : item.state, shown ? r.label : "",
        shown ? r.probability : "", item.state === "done" ? r.threshold : "",
        item.state === "done" ? r.in_scope : "", r.scope_reason || "", r.population || "",
        r.population_warning || "", item.state === "done" ? isApplicable(r) : "",
        shown && isApplicable(r) && r.cause ? r.cause : "",
        shown && isApplicable(r) && r.cause_probability != null ? r.cause_probability : "",
        study.modality || "", study.view || "", study.study_date || "", r.model || "",
        item.error];
      lines.push(values.map(csvField).join(","));
    });
    download("pneumoscan-worklist-" + stamp() + ".csv", lines.join("\r\n") + "\r\n",
             "text/csv");
  }

  function csvField(value) {
    let text = String(value === null || value === undefined ? "" : value);
    if (/^[=+\-@\t\r]/.test(text)) text = "'" + text; // not a formula in a spreadsheet
    return /[",\r\n']/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function stamp() {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return now.getFullYear() + pad(now.getMonth() + 1) + pad(now.getDate()) + "-" +
      pad(now.getHours()) + pad(now.getMinutes());
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type: type + ";charset=utf-8" }));
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  function clearList() {
    items = [];
    queue.length = 0;
    run = { total: 0, done: 0, errors: 0 };
    openId = null;
    show(els.result, false);
    updateProgress();
    renderWorklist();
    showError("");
    els.input.value = "";
  }

  // --- the study view --------------------------------------------------------------------------

  const view = { zoom: 1, tx: 0, ty: 0, window: 255, level: 128, pixels: null };

  function openStudy(id, focus) {
    const item = items.find((i) => i.id === id);
    if (!item) return;
    openId = id;
    renderWorklist();
    if (item.state === "error") {
      show(els.result, false);
      showError("This file could not be analysed: " + sentence(item.error) + ".");
      return;
    }
    if (item.state !== "done") return;
    showError("");
    renderResult(item);
    show(els.result, true);
    if (focus) {
      els.resultTitle.focus({ preventScroll: true });
      els.result.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  function renderResult(item) {
    const result = item.result;
    const applicable = isApplicable(result);
    const warning = populationWarning(result);
    els.studyName.textContent = item.name;

    show(els.scopeWarning, !result.in_scope);
    els.scopeReason.textContent = sentence(result.scope_reason) || "unlike the training radiographs";
    // Out of scope says it all: no population note under it.
    show(els.populationWarning, Boolean(warning) && result.in_scope);
    els.populationText.textContent = sentence(warning);
    const reason = sentence(result.population_reason);
    els.populationReason.textContent = reason
      ? "Why: " + reason.charAt(0).toLowerCase() + reason.slice(1) + "." : "";

    // Out of scope: no label, no bar, no cause; an unvalidated population: a small muted
    // label under a caption that says so, and no cause estimate.
    show(els.finding, result.in_scope);
    els.finding.classList.toggle("unvalidated", !applicable);
    show(els.labelCaption, result.in_scope && !applicable);
    const positive = isPositive(result);
    els.label.textContent = result.label;
    els.label.className = "label-value " + (applicable ? (positive ? "positive" : "negative")
                                                       : "muted");
    els.probabilityText.textContent = "P(pneumonia) = " + percent(result.probability) +
      " (threshold " + percent(result.threshold) + ")";
    els.barFill.style.width = percent(result.probability);
    els.barThreshold.style.left = percent(result.threshold);
    els.bar.setAttribute("aria-label", "Probability of pneumonia " +
      percent(result.probability) + "; threshold " + percent(result.threshold));
    const hasCause = applicable && positive && result.cause && result.cause_probability != null;
    show(els.cause, Boolean(hasCause));
    if (hasCause) {
      els.causeText.textContent = "more likely " + result.cause + " pneumonia (P(bacterial) = " +
        percent(result.cause_probability) + ").";
    }

    renderFacts(item);
    const heat = Boolean(result.in_scope && result.heatmap_layer_png);
    const layer = heat ? "data:image/png;base64," + result.heatmap_layer_png : "";
    for (const img of [els.heatOverlay, els.heatSide]) {
      if (layer) img.src = layer;
      else img.removeAttribute("src"); // never an empty src: no broken-image icon
    }
    show(els.heatMode, heat);
    show(els.legend, heat);
    loadImage(item);
    els.modelVersion.textContent = result.model;
    els.elapsed.textContent = "answered in " + Math.round(result.elapsed_ms) + " ms";
  }

  function studyFacts(item) {
    const result = item.result;
    const study = result.study;
    const facts = [];
    if (study) {
      facts.push(["Modality", study.modality || "not stated"]);
      facts.push(["Body part", study.body_part || "not stated"]);
      facts.push(["View", study.view || "not stated"]);
      facts.push(["Study date", study.study_date || "not stated"]);
    } else {
      facts.push(["Format", "not DICOM: no study facts in the file"]);
    }
    facts.push(["Image", result.width + " × " + result.height + " px, " + formatSize(item.size)]);
    return facts;
  }

  function renderFacts(item) {
    els.facts.replaceChildren(...studyFacts(item).flatMap(([term, value]) =>
      [el("dt", {}, term), el("dd", {}, value)]));
  }

  // The radiograph is drawn on a canvas through a window/level table; zoom and pan are a
  // CSS transform of the stage (image and heat layer together), in fractions of the pane.

  function loadImage(item) {
    const result = item.result;
    view.zoom = 1; view.tx = 0; view.ty = 0;
    resetWindowLevel(false);
    const aspect = result.width + " / " + result.height;
    els.paneMain.style.aspectRatio = aspect;
    els.paneSide.style.aspectRatio = aspect;
    els.viewer.style.setProperty("--aspect", String(result.width / result.height));
    const image = new Image();
    image.onload = () => {
      if (openId !== item.id) return;
      const canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      view.pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      for (const target of [els.canvas, els.canvasSide]) {
        target.width = canvas.width;
        target.height = canvas.height;
      }
      drawImage();
    };
    image.src = item.image;
    updateHeat();
    updateTransform();
  }

  function drawImage() {
    if (!view.pixels) return;
    const low = view.level - view.window / 2;
    const table = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) table[v] = Math.round(((v - low) / view.window) * 255);
    const source = view.pixels.data;
    const output = new ImageData(view.pixels.width, view.pixels.height);
    const data = output.data;
    for (let i = 0; i < source.length; i += 4) {
      data[i] = table[source[i]];
      data[i + 1] = table[source[i + 1]];
      data[i + 2] = table[source[i + 2]];
      data[i + 3] = 255;
    }
    els.canvas.getContext("2d").putImageData(output, 0, 0);
    els.canvasSide.getContext("2d").putImageData(output, 0, 0);
    describeView();
  }

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; drawImage(); });
  }

  function heatModeValue() {
    const checked = els.heatMode.querySelector("input:checked");
    return els.heatMode.hidden ? "off" : checked ? checked.value : "overlay";
  }

  function updateHeat() {
    const mode = heatModeValue();
    const opacity = Number(els.opacity.value) / 100;
    show(els.heatOverlay, mode === "overlay");
    show(els.paneSide, mode === "side");
    show(els.opacityControl, mode !== "off");
    els.viewer.classList.toggle("side-by-side", mode === "side");
    els.heatOverlay.style.opacity = String(opacity);
    els.heatSide.style.opacity = String(opacity);
    describeView();
  }

  function clampPan() {
    view.tx = Math.min(0, Math.max(1 - view.zoom, view.tx));
    view.ty = Math.min(0, Math.max(1 - view.zoom, view.ty));
  }

  function updateTransform() {
    clampPan();
    const transform = "translate(" + (100 * view.tx) + "%, " + (100 * view.ty) + "%) scale(" +
      view.zoom + ")";
    els.stageMain.style.transform = transform;
    els.stageSide.style.transform = transform;
    els.zoomLevel.textContent = Math.round(100 * view.zoom) + "%";
    els.viewer.classList.toggle("zoomed", view.zoom > 1);
    describeView();
  }

  function zoomTo(zoom, cx = 0.5, cy = 0.5) {
    const next = Math.min(MAX_ZOOM, Math.max(1, zoom));
    // Keep the point under (cx, cy) of the pane where it is.
    view.tx = cx - ((cx - view.tx) / view.zoom) * next;
    view.ty = cy - ((cy - view.ty) / view.zoom) * next;
    view.zoom = next;
    updateTransform();
  }

  function resetWindowLevel(draw = true) {
    view.window = 255; view.level = 128;
    els.wlWindow.value = "255"; els.wlLevel.value = "128";
    if (draw) drawImage();
  }

  function describeView() {
    const mode = heatModeValue();
    const heat = mode === "off" ? "no heat map"
      : "heat map " + (mode === "side" ? "beside the image" : "over the image") +
        " at " + els.opacity.value + "% opacity";
    els.paneMain.setAttribute("aria-label", "The X-ray " + els.studyName.textContent +
      ", zoom " + Math.round(100 * view.zoom) + "%, window " + view.window + ", level " +
      view.level + (mode === "overlay" ? ", " + heat : ""));
    els.paneSide.setAttribute("aria-label", "The same X-ray with the " + heat);
  }

  function dragOn(pane) {
    let start = null;
    pane.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      pane.setPointerCapture(event.pointerId);
      start = { x: event.clientX, y: event.clientY, tx: view.tx, ty: view.ty,
                window: view.window, level: view.level,
                mode: document.querySelector("input[name=drag]:checked").value };
      event.preventDefault();
    });
    pane.addEventListener("pointermove", (event) => {
      if (!start) return;
      const box = pane.getBoundingClientRect();
      const dx = event.clientX - start.x;
      const dy = event.clientY - start.y;
      if (start.mode === "pan") {
        view.tx = start.tx + dx / box.width;
        view.ty = start.ty + dy / box.height;
        updateTransform();
      } else { // right: wider window (less contrast); down: higher level (darker)
        view.window = Math.round(Math.min(255, Math.max(1, start.window + dx)));
        view.level = Math.round(Math.min(255, Math.max(0, start.level + dy)));
        els.wlWindow.value = String(view.window);
        els.wlLevel.value = String(view.level);
        scheduleDraw();
      }
    });
    const end = () => { start = null; };
    pane.addEventListener("pointerup", end);
    pane.addEventListener("pointercancel", end);
    pane.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = pane.getBoundingClientRect();
      zoomTo(view.zoom * (event.deltaY < 0 ? 1.25 : 0.8),
             (event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height);
    }, { passive: false });
  }

  els.paneMain.addEventListener("keydown", (event) => {
    const step = 0.1 / view.zoom;
    const keys = {
      "+": () => zoomTo(view.zoom * 1.25), "=": () => zoomTo(view.zoom * 1.25),
      "-": () => zoomTo(view.zoom * 0.8), "0": () => zoomTo(1),
      ArrowLeft: () => { view.tx += step; updateTransform(); },
      ArrowRight: () => { view.tx -= step; updateTransform(); },
      ArrowUp: () => { view.ty += step; updateTransform(); },
      ArrowDown: () => { view.ty -= step; updateTransform(); },
    };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });

  // --- the report ------------------------------------------------------------------------------

  let reportCss = null;
  async function reportStyles() {
    if (reportCss === null) {
      const response = await fetch("/static/report.css");
      reportCss = response.ok ? await response.text() : "";
    }
    return reportCss;
  }

  function reportBody(item, when) {
    const r = item.result;
    const applicable = isApplicable(r);
    const warning = populationWarning(r);
    const model = modelCard
      ? modelCard.name + " " + modelCard.version + " (" + modelCard.arch + ")" : r.model;
    const rows = studyFacts(item).map(([term, value]) =>
      "<tr><th>" + escapeHtml(term) + "</th><td>" + escapeHtml(value) + "</td></tr>").join("");
    let finding;
    if (!r.in_scope) {
      finding = '<p class="r-none">No result: the image is out of the model\'s scope.</p>';
    } else {
      finding = (applicable ? "" : '<p class="r-caption">Model output, not validated for ' +
                   "this patient group; not a finding:</p>") +
        '<p class="r-label ' + (applicable ? (isPositive(r) ? "positive" : "negative")
                                           : "muted") + '">' + escapeHtml(r.label) +
        ' <span class="r-prob">P(pneumonia) ' + percent(r.probability) + ", threshold " +
        percent(r.threshold) + "</span></p>" +
        (applicable && isPositive(r) && r.cause && r.cause_probability != null
          ? "<p>Secondary estimate, lower confidence: more likely " + escapeHtml(r.cause) +
            " pneumonia (P(bacterial) " + percent(r.cause_probability) + "); do not base " +
            "treatment on it.</p>" : "");
    }
    const notes = [];
    notes.push(r.in_scope ? "In scope: the image looks like a frontal chest radiograph."
      : "<strong>Out of scope:</strong> " + escapeHtml(sentence(r.scope_reason)) + ".");
    if (warning) {
      notes.push("<strong>Not validated for this patient:</strong> " +
                 escapeHtml(sentence(warning)) + ".");
    }
    if (r.population_reason) notes.push("Population: " + escapeHtml(r.population_reason));
    const images = ['<figure><img src="' + item.image + '" alt="The radiograph">' +
                    "<figcaption>The radiograph as the model read it</figcaption></figure>"];
    if (r.in_scope && r.heatmap_png) {
      images.push('<figure><img src="data:image/png;base64,' + r.heatmap_png +
        '" alt="The radiograph with the heat map">' + "<figcaption>Heat map: where the " +
        "model found evidence of pneumonia (colour bar: none to strong, one scale for " +
        "every image)</figcaption></figure>");
    }
    return '<article class="report">' +
      "<header><h1>pneumoscan report</h1>" +
      '<p class="r-disclaimer"><strong>Decision support, not a diagnosis.</strong> ' +
      "The model was trained on pediatric (ages 1–5) frontal chest radiographs from one " +
      "centre. A qualified clinician must read every radiograph.</p></header>" +
      (notes.length ? '<section class="r-notes">' + notes.map((n) => "<p>" + n + "</p>")
        .join("") + "</section>" : "") +
      '<section class="r-result">' + finding + "</section>" +
      '<section class="r-images">' + images.join("") + "</section>" +
      '<table class="r-facts"><tr><th>File</th><td>' + escapeHtml(item.name) + "</td></tr>" +
      rows + "<tr><th>Model</th><td>" + escapeHtml(model) + "</td></tr>" +
      "<tr><th>Threshold</th><td>" + percent(r.threshold) + "</td></tr>" +
      "<tr><th>Report made</th><td>" + escapeHtml(when.toLocaleString()) + " (" +
      escapeHtml(when.toISOString()) + ")</td></tr></table>" +
      "<footer><p>Made by pneumoscan in the browser; the image was not kept on the " +
      "server.</p></footer></article>";
  }

  async function downloadReport() {
    const item = items.find((i) => i.id === openId);
    if (!item || item.state !== "done") return;
    const css = await reportStyles();
    const html = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" +
      "<title>pneumoscan report: " + escapeHtml(item.name) + "</title><style>" + css +
      "</style></head><body>" + reportBody(item, new Date()) + "</body></html>\n";
    const base = item.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]+/g, "_") || "study";
    download("pneumoscan-report-" + base + "-" + stamp() + ".html", html, "text/html");
  }

  function printReport() {
    const item = items.find((i) => i.id === openId);
    if (!item || item.state !== "done") return;
    els.printArea.innerHTML = reportBody(item, new Date()); // every value escaped above
    window.print();
  }

  // --- start-up -------------------------------------------------------------------------------

  async function loadHealth() {
    try {
      const response = await fetch("/api/v1/health");
      if (!response.ok) throw new Error(String(response.status));
      const health = await response.json();
      maxUploadBytes = health.max_upload_bytes;
      els.footerModel.textContent = "model " + health.model + " (" + health.backend + ")";
      const card = await fetch("/api/v1/model");
      if (card.ok) modelCard = await card.json();
    } catch (err) {
      els.footerModel.textContent = "the server is not answering";
    }
  }

  els.input.addEventListener("change", () => { addFiles(els.input.files); els.input.value = ""; });
  els.exportCsv.addEventListener("click", exportCsv);
  els.clearList.addEventListener("click", clearList);
  els.heatMode.addEventListener("change", updateHeat);
  els.opacity.addEventListener("input", updateHeat);
  els.zoomIn.addEventListener("click", () => zoomTo(view.zoom * 1.25));
  els.zoomOut.addEventListener("click", () => zoomTo(view.zoom * 0.8));
  els.zoomFit.addEventListener("click", () => zoomTo(1));
  els.wlWindow.addEventListener("input", () => {
    view.window = Number(els.wlWindow.value);
    scheduleDraw();
  });
  els.wlLevel.addEventListener("input", () => {
    view.level = Number(els.wlLevel.value);
    scheduleDraw();
  });
  els.wlReset.addEventListener("click", () => resetWindowLevel());
  els.downloadReport.addEventListener("click", downloadReport);
  els.printReport.addEventListener("click", printReport);
  dragOn(els.paneMain);
  dragOn(els.paneSide);

  ["dragenter", "dragover"].forEach((type) => els.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    els.dropzone.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((type) => els.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    els.dropzone.classList.remove("dragover");
  }));
  els.dropzone.addEventListener("drop", (event) => {
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) addFiles(files);
  });
  // A file dropped outside the zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  loadHealth();
})();
