// pneumoscan page: analyse one or many X-rays, rank them in a worklist, open a study with
// zoom, pan, full-depth window/level (a DICOM's own values, windowed here), invert, rotate,
// full screen and the heat map, and download or print a one-page report. A DICOM's patient
// identity is shown in the study, the worklist and the report; it stays in this tab.
// Plain JavaScript, no libraries: the page must work with no internet. Everything about
// the files stays in this tab: nothing is stored on the server or in the browser's storage.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    input: $("file-input"), dropzone: $("dropzone"), error: $("error"),
    progress: $("progress"), progressBar: $("progress-bar"), progressText: $("progress-text"),
    worklistSection: $("worklist-section"), worklistBody: $("worklist-body"),
    exportCsv: $("export-csv"), clearList: $("clear-list"), csvIdentifiers: $("csv-identifiers"),
    app: $("app"), toggleList: $("toggle-list"), identity: $("identity"),
    identityNone: $("identity-none"), typedIdentity: $("typed-identity"),
    studyGrid: $("study-grid"), studyImage: $("study-image"), wlPreset: $("wl-preset"),
    wlReadout: $("wl-readout"), wlDepth: $("wl-depth"), invert: $("invert"),
    rotate: $("rotate"), fullscreen: $("fullscreen"),
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
  // The server decides it (pneumoscan.result_meaning) and the page only renders it:
  // `applicable`; the finding (`label`, `probability`, `positive`, `cause`), null when the
  // result does not apply; `not_applicable_reasons`; `model_output_note`, the raw output in
  // words to show greyed ("" when it is not to be shown); `heatmap_style` ("grey": no heat
  // map unless asked for, and then the greyed one the server drew).

  // Worklist groups: validated results, then outside the validated population, then out of
  // scope, then files still being analysed, then files that could not be read. Only the
  // validated results are ranked by probability; the others keep the order chosen.
  function group(item) {
    if (item.state === "error") return 4;
    if (item.state !== "done") return 3;
    if (!item.result.in_scope) return 2;
    return item.result.applicable ? 0 : 1;
  }

  function ranked() {
    return items.slice().sort((a, b) => group(a) - group(b) ||
      (group(a) === 0 ? b.result.probability - a.result.probability : 0) || a.id - b.id);
  }

  // As pneumoscan.result_meaning: out of scope, an "unknown" population says nothing more;
  // a known one (an adult's film unlike the training films, a header age) is shown.
  function populationShown(result) {
    return result.in_scope || result.population !== "unknown";
  }

  function flagsOf(item) {
    const flags = [];
    if (item.state !== "done") return flags;
    const result = item.result;
    if (!result.in_scope) flags.push(["bad", "out of scope"]);
    if (!populationShown(result)) return flags;
    if (result.population_warning) {
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
                     result: null, error: "", thumb: null, image: null, typedIdentity: "",
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
      ? el("button", { type: "button", class: "link open-study file-name" },
           ...fileNameParts(item.name))
      : el("span", { class: "name file-name" }, ...fileNameParts(item.name));
    const who = done && result.identity ? identityLine(result.identity) : "";
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
    } else if (!result.applicable) {
      label = el("span", { class: "unvalidated" }, result.model_output.label + " (not validated)");
      probability = el("span", { class: "unvalidated" }, percent(result.model_output.probability));
    } else {
      label = el("strong", { class: result.positive ? "positive" : "negative" }, result.label);
      probability = percent(result.probability);
    }
    const flags = el("span", { class: "flags" },
      ...flagsOf(item).map(([kind, text]) => el("span", { class: "flag " + kind }, text)));
    row.append(
      el("td", { class: "rank" }, String(rank)), el("td", { class: "thumb-cell" }, thumb),
      el("td", { class: "file" }, name, who ? el("span", { class: "who" }, who) : null,
         el("span", { class: "size" }, formatSize(item.size))),
      el("td", { class: "result-cell" }, label), el("td", { class: "num" }, probability),
      el("td", { class: "flags-cell" }, flags));
    return row;
  }

  // "…/a-long-name.jpeg" as a stem that may break anywhere and an extension that may not.
  function fileNameParts(name) {
    const dot = name.lastIndexOf(".");
    if (dot <= 0) return [el("span", { class: "stem" }, name)];
    return [el("span", { class: "stem" }, name.slice(0, dot)),
            el("span", { class: "ext" }, name.slice(dot))];
  }

  function identityLine(identity) {
    return [identity.name, identity.patient_id ? "ID " + identity.patient_id : ""]
      .filter(Boolean).join(" · ");
  }

  els.worklistBody.addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (!row) return;
    const item = items.find((i) => i.id === Number(row.dataset.id));
    if (item && item.state === "done") openStudy(item.id, true);
  });

  function exportCsv() {
    // The finding's columns are the server's: empty when the result does not apply.
    const columns = ["rank", "file", "size_bytes", "status", "applicable", "label",
      "probability", "threshold", "cause", "cause_probability", "not_applicable_reasons",
      "model_output_note", "in_scope", "scope_reason", "population", "population_warning",
      "modality", "view", "study_date", "model", "error"];
    const identifiers = els.csvIdentifiers.checked; // off unless the user asks
    if (identifiers) columns.push(...IDENTITY_COLUMNS.map(([column]) => column));
    const lines = [columns.join(",")];
    ranked().forEach((item, index) => {
      const done = item.state === "done";
      const r = item.result || {};
      const study = r.study || {};
      const values = [index + 1, item.name, item.size, done ? "ok" : item.state,
        done ? r.applicable : "", r.label, r.probability, done ? r.threshold : "", r.cause,
        r.cause_probability, (r.not_applicable_reasons || []).join(" "),
        r.model_output_note, done ? r.in_scope : "", r.scope_reason, r.population,
        r.population_warning, study.modality, study.view, study.study_date, r.model,
        item.error];
      if (identifiers) {
        const identity = r.identity || {};
        values.push(...IDENTITY_COLUMNS.map(([, field]) => identity[field] || ""));
      }
      lines.push(values.map(csvField).join(","));
    });
    download("pneumoscan-worklist-" + stamp() + ".csv", lines.join("\r\n") + "\r\n",
             "text/csv");
  }

  const IDENTITY_COLUMNS = [["patient_name", "name"], ["patient_id", "patient_id"],
    ["birth_date", "birth_date"], ["sex", "sex"], ["accession_number", "accession_number"],
    ["study_description", "study_description"]];

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

  // The view of the open study. values: the image's grey values (a DICOM's modality-LUT
  // output as 16-bit codes, value = offset + scale * code; else the 8-bit levels), windowed
  // here through a table on every draw.
  const view = { zoom: 1, tx: 0, ty: 0, window: 256, level: 128, invert: false,
                 rotation: 0, values: null, width: 0, height: 0, offset: 0, scale: 1,
                 low: 0, high: 255, monochrome1: false, presets: [], full: false };

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
      // A wide screen shows the study beside the list already; a narrow one scrolls to it.
      if (!WIDE.matches) els.result.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  function renderResult(item) {
    const result = item.result;
    const applicable = result.applicable;
    const warning = result.population_warning;
    els.studyName.textContent = item.name;

    show(els.scopeWarning, !result.in_scope);
    els.scopeReason.textContent = sentence(result.scope_reason) || "unlike the training radiographs";
    show(els.populationWarning, Boolean(warning) && populationShown(result));
    els.populationText.textContent = sentence(warning);
    const reason = sentence(result.population_reason);
    els.populationReason.textContent = reason ? "Why: " + reason + "." : "";

    // The finding; for a result that does not apply, the model's output small and muted
    // under a caption, when the server gives it (model_output_note), else nothing.
    const shown = applicable ? result : result.model_output_note ? result.model_output : null;
    show(els.finding, Boolean(shown));
    els.finding.classList.toggle("unvalidated", !applicable);
    show(els.labelCaption, !applicable && Boolean(shown));
    if (shown) {
      els.label.textContent = shown.label;
      els.label.className = "label-value " + (applicable ? (result.positive ? "positive"
                                                           : "negative") : "muted");
      els.probabilityText.textContent = "P(pneumonia) = " + percent(shown.probability) +
        " (threshold " + percent(result.threshold) + ")";
      els.barFill.style.width = percent(shown.probability);
      els.barThreshold.style.left = percent(result.threshold);
      els.bar.setAttribute("aria-label", "Probability of pneumonia " +
        percent(shown.probability) + "; threshold " + percent(result.threshold));
    }
    const hasCause = applicable && result.cause && result.cause_probability != null;
    show(els.cause, Boolean(hasCause));
    if (hasCause) {
      els.causeText.textContent = "more likely " + result.cause + " pneumonia (P(bacterial) = " +
        percent(result.cause_probability) + ").";
    }

    renderFacts(item);
    renderIdentity(item);
    // A result that does not apply: the heat map starts off, and is the greyed one when
    // switched on (heatmap_style "grey").
    const heat = Boolean(result.heatmap_layer_png);
    const layer = heat ? "data:image/png;base64," + result.heatmap_layer_png : "";
    for (const img of [els.heatOverlay, els.heatSide]) {
      if (layer) img.src = layer;
      else img.removeAttribute("src"); // never an empty src: no broken-image icon
    }
    show(els.heatMode, heat);
    const start = els.heatMode.querySelector('input[value="' +
      (result.heatmap_style === "colour" ? "overlay" : "off") + '"]');
    if (heat && start) start.checked = true;
    show(els.legend, heat && result.heatmap_style === "colour");
    loadImage(item);
    requestAnimationFrame(fitViewerHeight);
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

  // Who the film is of: a DICOM's header identity, or (JPEG, PNG) a field to type one.
  function identityFacts(identity) {
    return [["Patient", identity.name, "name"], ["Patient ID", identity.patient_id],
            ["Birth date", identity.birth_date], ["Sex", identity.sex],
            ["Accession", identity.accession_number], ["Study date", identity.study_date],
            ["Study", identity.study_description]]
      .filter(([, value]) => value);
  }

  function renderIdentity(item) {
    const identity = item.result.identity;
    const facts = identity ? identityFacts(identity) : [];
    els.identity.replaceChildren(...facts.map(([term, value, kind]) =>
      el("div", { class: kind || "" }, el("dt", {}, term), el("dd", {}, value))));
    if (identity && !facts.length) {
      els.identity.replaceChildren(el("div", {}, el("dt", {}, "Patient"),
                                      el("dd", {}, "not stated in the DICOM header")));
    }
    show(els.identityNone, !identity);
    els.typedIdentity.value = item.typedIdentity;
  }

  els.typedIdentity.addEventListener("input", () => {
    const item = items.find((i) => i.id === openId);
    if (item) item.typedIdentity = els.typedIdentity.value;
  });

  // The radiograph is drawn on a canvas through a window/level table over its values; zoom
  // and pan are a CSS transform of the stage (image and heat layer together), in fractions
  // of the pane; rotation turns the layers inside the stage, whose shape turns with them.

  async function loadImage(item) {
    const result = item.result;
    const display = result.display;
    view.zoom = 1; view.tx = 0; view.ty = 0; view.rotation = 0; view.invert = false;
    view.values = null;
    layout(result.width, result.height);
    updateHeat();
    updateTransform();
    let values;
    try {
      values = display ? await decodePng16(display.png) : await grayLevels(item.image);
    } catch (err) {
      values = await grayLevels(item.image); // a browser without DecompressionStream
      item.result = Object.assign({}, result, { display: null });
    }
    if (openId !== item.id) return;
    const full = item.result.display;
    Object.assign(view, {
      values: values.data, width: values.width, height: values.height,
      offset: full ? full.offset : 0, scale: full ? full.scale : 1,
      low: full ? full.low : 0, high: full ? full.high : 255,
      monochrome1: Boolean(full && full.monochrome1),
      presets: full && full.presets.length ? full.presets.slice()
        : [{ name: "The image as read", center: 128, width: 255 }],
    });
    if (full) {
      view.presets.push({ name: "Full range", center: (full.low + full.high) / 2,
                          width: Math.max(full.high - full.low, 1e-6) });
    }
    for (const target of [els.canvas, els.canvasSide]) {
      target.width = view.width;
      target.height = view.height;
    }
    els.wlDepth.textContent = full
      ? "Full depth: the DICOM's own values (" + formatValue(full.low) + " to " +
        formatValue(full.high) + "), windowed in this browser."
      : "8-bit image: window and level over its 256 grey levels.";
    const span = view.high - view.low || 1;
    els.wlWindow.min = String(span / 1000);
    els.wlWindow.max = String(2 * span);
    els.wlLevel.min = String(view.low - span / 2);
    els.wlLevel.max = String(view.high + span / 2);
    els.wlPreset.replaceChildren(...view.presets.map((preset, index) =>
      el("option", { value: String(index) }, (index < 9 ? index + 1 + ". " : "") +
         preset.name + " (W " + formatValue(preset.width) + ", L " +
         formatValue(preset.center) + ")")));
    choosePreset(0);
    requestAnimationFrame(fitViewerHeight); // the controls above it have their text now
  }

  // The 8-bit image's grey levels (its red channel), from the PNG the server sent.
  function grayLevels(source) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => {
        const canvas = document.createElement("canvas");
        canvas.width = image.naturalWidth;
        canvas.height = image.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(image, 0, 0);
        const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
        const data = new Uint16Array(canvas.width * canvas.height);
        for (let i = 0; i < data.length; i++) data[i] = rgba[4 * i];
        resolve({ width: canvas.width, height: canvas.height, data });
      };
      image.onerror = reject;
      image.src = source;
    });
  }

  // A 16-bit grayscale, non-interlaced PNG (what the server sends) to its codes: a canvas
  // would round it to 8 bits, so it is read here: chunks, inflate (the browser's
  // DecompressionStream), then the five PNG row filters.
  async function decodePng16(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const dv = new DataView(bytes.buffer);
    let offset = 8, width = 0, height = 0;
    const parts = [];
    while (offset < bytes.length) {
      const length = dv.getUint32(offset);
      const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
      const body = bytes.subarray(offset + 8, offset + 8 + length);
      if (type === "IHDR") {
        width = dv.getUint32(offset + 8);
        height = dv.getUint32(offset + 12);
        if (body[8] !== 16 || body[9] !== 0 || body[12] !== 0) {
          throw new Error("not a 16-bit grayscale PNG");
        }
      } else if (type === "IDAT") {
        parts.push(body);
      }
      offset += 12 + length;
    }
    const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
    const raw = new Uint8Array(await new Response(stream).arrayBuffer());
    const stride = width * 2;
    const out = new Uint8Array(stride * height);
    for (let y = 0; y < height; y++) {
      const filter = raw[y * (stride + 1)];
      const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
      const row = y * stride;
      for (let x = 0; x < stride; x++) {
        const a = x >= 2 ? out[row + x - 2] : 0;
        const b = y > 0 ? out[row - stride + x] : 0;
        const c = x >= 2 && y > 0 ? out[row - stride + x - 2] : 0;
        let predicted = 0;
        if (filter === 1) predicted = a;
        else if (filter === 2) predicted = b;
        else if (filter === 3) predicted = (a + b) >> 1;
        else if (filter === 4) {
          const p = a + b - c;
          const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        out[row + x] = (line[x] + predicted) & 0xff;
      }
    }
    const data = new Uint16Array(width * height);
    for (let i = 0; i < data.length; i++) data[i] = (out[2 * i] << 8) | out[2 * i + 1];
    return { width, height, data };
  }

  function formatValue(value) {
    const span = Math.abs(view.high - view.low);
    const digits = span >= 100 ? 0 : span >= 10 ? 1 : 2;
    return Number(value).toFixed(digits);
  }

  function choosePreset(index) {
    const preset = view.presets[index];
    if (!preset) return;
    view.window = preset.width;
    view.level = preset.center;
    els.wlPreset.value = String(index);
    syncWindowLevel();
  }

  function syncWindowLevel() {
    els.wlWindow.value = String(view.window);
    els.wlLevel.value = String(view.level);
    els.wlReadout.textContent = "W " + formatValue(view.window) + " · L " +
      formatValue(view.level);
    const match = view.presets.findIndex((p) => Math.abs(p.width - view.window) < 1e-9 &&
                                                Math.abs(p.center - view.level) < 1e-9);
    if (match < 0 && els.wlPreset.querySelector("option[value=custom]") === null) {
      els.wlPreset.append(el("option", { value: "custom" }, "Custom"));
    }
    els.wlPreset.value = match >= 0 ? String(match) : "custom";
    els.invert.setAttribute("aria-pressed", String(view.invert));
    scheduleDraw();
  }

  function drawImage() {
    if (!view.values) return;
    // One table entry per code: its value through the window, inverted when asked (and for
    // MONOCHROME1, whose low values are bright).
    let top = 0;
    for (let i = 0; i < view.values.length; i++) if (view.values[i] > top) top = view.values[i];
    const table = new Uint8ClampedArray(top + 1);
    const low = view.level - view.window / 2;
    const flip = view.invert !== view.monochrome1;
    for (let code = 0; code <= top; code++) {
      const level = ((view.offset + view.scale * code - low) / view.window) * 255;
      table[code] = flip ? 255 - level : level;
    }
    const output = new ImageData(view.width, view.height);
    const data = output.data;
    const values = view.values;
    for (let i = 0, j = 0; i < values.length; i++, j += 4) {
      const grey = table[values[i]];
      data[j] = grey; data[j + 1] = grey; data[j + 2] = grey; data[j + 3] = 255;
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

  // The panes take the image's shape, turned with it; the layers (image, heat map) are
  // laid out unturned inside the stage and rotated about their centre.
  function layout(width, height) {
    view.aspect = width / height;
    const a = view.aspect;
    const turned = view.rotation % 180 !== 0;
    const shown = turned ? 1 / a : a;
    els.paneMain.style.aspectRatio = String(shown);
    els.paneSide.style.aspectRatio = String(shown);
    els.viewer.style.setProperty("--aspect", String(shown));
    const box = turned
      ? { left: (1 - a) / 2 * 100 + "%", top: (1 - 1 / a) / 2 * 100 + "%",
          width: a * 100 + "%", height: 100 / a + "%" }
      : { left: "0", top: "0", width: "100%", height: "100%" };
    for (const layer of document.querySelectorAll(".stage .layer")) {
      Object.assign(layer.style, box);
      layer.style.transform = view.rotation ? "rotate(" + view.rotation + "deg)" : "";
    }
  }

  // On a wide screen the radiograph takes the height left below the study's header, so that
  // it is in view, whole, as soon as the study opens.
  const WIDE = window.matchMedia("(min-width: 64rem)");
  function fitViewerHeight() {
    if (!WIDE.matches || els.result.hidden) {
      els.viewer.style.removeProperty("--view-height");
      return;
    }
    const top = els.viewer.getBoundingClientRect().top + window.scrollY;
    const legend = els.legend.hidden ? 0 : els.legend.offsetHeight + 8;
    const left = window.innerHeight - top - legend - 16; // the page unscrolled
    els.viewer.style.setProperty("--view-height", Math.max(240, left) + "px");
  }
  window.addEventListener("resize", fitViewerHeight);

  function rotate() {
    view.rotation = (view.rotation + 90) % 360;
    const item = items.find((i) => i.id === openId);
    if (item) layout(item.result.width, item.result.height);
    view.tx = 0; view.ty = 0;
    updateTransform();
  }

  function heatModeValue() {
    const checked = els.heatMode.querySelector("input:checked");
    return els.heatMode.hidden ? "off" : checked ? checked.value : "overlay";
  }

  let listHiddenBySide = false; // side by side hid the worklist: show it again after
  function updateHeat() {
    const mode = heatModeValue();
    const opacity = Number(els.opacity.value) / 100;
    show(els.heatOverlay, mode === "overlay");
    show(els.paneSide, mode === "side");
    show(els.opacityControl, mode !== "off");
    els.viewer.classList.toggle("side-by-side", mode === "side");
    // Side by side takes the page's whole width: the worklist steps aside meanwhile.
    if (mode === "side" && !els.app.classList.contains("list-hidden")) {
      listHiddenBySide = true;
      setListHidden(true);
    } else if (mode !== "side" && listHiddenBySide) {
      listHiddenBySide = false;
      setListHidden(false);
    }
    els.heatOverlay.style.opacity = String(opacity);
    els.heatSide.style.opacity = String(opacity);
    fitViewerHeight();
    describeView();
  }

  function setListHidden(hidden) {
    els.app.classList.toggle("list-hidden", hidden);
    els.toggleList.textContent = hidden ? "Show list" : "Hide list";
    els.toggleList.setAttribute("aria-expanded", String(!hidden));
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

  // Reset: the whole view as it opened (fit, unturned, not inverted, the first window).
  function resetView() {
    view.zoom = 1; view.tx = 0; view.ty = 0; view.invert = false;
    if (view.rotation) { view.rotation = 270; rotate(); }
    updateTransform();
    choosePreset(0);
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (els.studyImage.requestFullscreen) els.studyImage.requestFullscreen();
  }

  function describeView() {
    const mode = heatModeValue();
    const heat = mode === "off" ? "no heat map"
      : "heat map " + (mode === "side" ? "beside the image" : "over the image") +
        " at " + els.opacity.value + "% opacity";
    els.paneMain.setAttribute("aria-label", "The X-ray " + els.studyName.textContent +
      ", zoom " + Math.round(100 * view.zoom) + "%, window " + formatValue(view.window) +
      ", level " + formatValue(view.level) + (view.invert ? ", inverted" : "") +
      (view.rotation ? ", turned " + view.rotation + " degrees" : "") +
      (mode === "overlay" ? ", " + heat : ""));
    els.paneSide.setAttribute("aria-label", "The same X-ray with the " + heat);
  }

  // Drag: window/level or pan; wheel: zoom; two fingers: pinch to zoom about their middle.
  function dragOn(pane) {
    let start = null;
    const touches = new Map();
    let pinch = null;
    pane.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      try { pane.setPointerCapture(event.pointerId); } catch (err) { /* not an active pointer */ }
      touches.set(event.pointerId, { x: event.clientX, y: event.clientY });
      if (touches.size === 2) {
        const [p, q] = [...touches.values()];
        pinch = { distance: Math.hypot(p.x - q.x, p.y - q.y) || 1, zoom: view.zoom };
        start = null;
      } else {
        start = { x: event.clientX, y: event.clientY, tx: view.tx, ty: view.ty,
                  window: view.window, level: view.level,
                  mode: document.querySelector("input[name=drag]:checked").value };
      }
      event.preventDefault();
    });
    pane.addEventListener("pointermove", (event) => {
      if (touches.has(event.pointerId)) {
        touches.set(event.pointerId, { x: event.clientX, y: event.clientY });
      }
      const box = pane.getBoundingClientRect();
      if (pinch && touches.size === 2) {
        const [p, q] = [...touches.values()];
        const distance = Math.hypot(p.x - q.x, p.y - q.y) || 1;
        zoomTo(pinch.zoom * distance / pinch.distance,
               ((p.x + q.x) / 2 - box.left) / box.width, ((p.y + q.y) / 2 - box.top) / box.height);
        return;
      }
      if (!start) return;
      const dx = event.clientX - start.x;
      const dy = event.clientY - start.y;
      if (start.mode === "pan") {
        view.tx = start.tx + dx / box.width;
        view.ty = start.ty + dy / box.height;
        updateTransform();
      } else { // right: wider window (less contrast); down: higher level (darker)
        const unit = (view.high - view.low || 1) / 255; // one 8-bit level per pixel
        const span = view.high - view.low || 1;
        view.window = Math.min(2 * span, Math.max(span / 1000, start.window + dx * unit));
        view.level = Math.min(view.high + span / 2,
                              Math.max(view.low - span / 2, start.level + dy * unit));
        syncWindowLevel();
      }
    });
    const end = (event) => {
      touches.delete(event.pointerId);
      if (touches.size < 2) pinch = null;
      start = null;
    };
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
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const step = 0.1 / view.zoom;
    const keys = {
      "+": () => zoomTo(view.zoom * 1.25), "=": () => zoomTo(view.zoom * 1.25),
      "-": () => zoomTo(view.zoom * 0.8), "0": () => zoomTo(1),
      ArrowLeft: () => { view.tx += step; updateTransform(); },
      ArrowRight: () => { view.tx -= step; updateTransform(); },
      ArrowUp: () => { view.ty += step; updateTransform(); },
      ArrowDown: () => { view.ty -= step; updateTransform(); },
      i: () => { view.invert = !view.invert; syncWindowLevel(); },
      r: rotate, f: toggleFullscreen, Home: resetView,
    };
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (/^[1-9]$/.test(key) && view.presets[Number(key) - 1]) {
      event.preventDefault();
      choosePreset(Number(key) - 1);
    } else if (keys[key]) {
      event.preventDefault();
      keys[key]();
    }
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
    const model = modelCard
      ? modelCard.name + " " + modelCard.version + " (" + modelCard.arch + ")" : r.model;
    const rows = studyFacts(item).map(([term, value]) =>
      "<tr><th>" + escapeHtml(term) + "</th><td>" + escapeHtml(value) + "</td></tr>").join("");
    // What the server decided: the finding, or the greyed model output, or nothing.
    let finding;
    if (r.applicable) {
      finding = '<p class="r-label ' + (r.positive ? "positive" : "negative") + '">' +
        escapeHtml(r.label) + ' <span class="r-prob">P(pneumonia) ' + percent(r.probability) +
        ", threshold " + percent(r.threshold) + "</span></p>" +
        (r.cause && r.cause_probability != null
          ? "<p>Secondary estimate, lower confidence: more likely " + escapeHtml(r.cause) +
            " pneumonia (P(bacterial) " + percent(r.cause_probability) + "); do not base " +
            "treatment on it.</p>" : "");
    } else if (r.model_output_note) {
      finding = '<p class="r-caption">Model output, not validated for this patient group; ' +
        'not a finding:</p><p class="r-label muted">' + escapeHtml(r.model_output.label) +
        ' <span class="r-prob">P(pneumonia) ' + percent(r.model_output.probability) +
        ", threshold " + percent(r.threshold) + "</span></p>";
    } else {
      finding = '<p class="r-none">No result: the image is out of the model\'s scope.</p>';
    }
    const notes = r.applicable
      ? ["In scope: the image looks like a frontal chest radiograph."]
      : r.not_applicable_reasons.map((reason) =>
        "<strong>Not applicable:</strong> " + escapeHtml(sentence(reason)) + ".");
    if (r.population_reason) notes.push("Population: " + escapeHtml(r.population_reason));
    const images = ['<figure><img src="' + item.image + '" alt="The radiograph">' +
                    "<figcaption>The radiograph as the model read it</figcaption></figure>"];
    // A greyed heat map only when the user switched it on for this study.
    const greyed = r.heatmap_style !== "colour";
    if (r.heatmap_png && (!greyed || heatModeValue() !== "off")) {
      images.push('<figure><img src="data:image/png;base64,' + r.heatmap_png +
        '" alt="The radiograph with the heat map">' + "<figcaption>" + (greyed
          ? "Heat map, greyed: the result does not apply, so this is not a finding"
          : "Heat map: where the model found evidence of pneumonia (colour bar: none to " +
            "strong, one scale for every image)") + "</figcaption></figure>");
    }
    return '<article class="report">' +
      "<header><h1>pneumoscan report</h1>" + reportIdentity(item) +
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

  // Who the film is of, first on the page: the DICOM header's identity, or for a JPEG or
  // PNG the statement that the file carries none and what the user typed (or a line to
  // write it on).
  function reportIdentity(item) {
    const identity = item.result.identity;
    if (identity) {
      const facts = identityFacts(identity);
      const cells = (facts.length ? facts : [["Patient", "not stated in the DICOM header"]])
        .map(([term, value]) => "<th>" + escapeHtml(term) + "</th><td>" + escapeHtml(value) +
             "</td>");
      let rows = ""; // two facts a row: the identity stays a few lines high
      for (let i = 0; i < cells.length; i += 2) {
        rows += "<tr>" + cells.slice(i, i + 2).join("") + "</tr>";
      }
      return '<table class="r-identity">' + rows + "</table>";
    }
    const typed = item.typedIdentity.trim();
    return '<table class="r-identity"><tr><th>Patient</th><td>' +
      (typed ? escapeHtml(typed) + ' <span class="r-typed">(typed by the user, not from ' +
               "the file)</span>"
             : '<span class="r-blank"></span>') + "</td></tr></table>" +
      '<p class="r-noid">The file (JPEG or PNG) carries no patient identity: check that ' +
      "this is the right patient.</p>";
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
    syncWindowLevel();
  });
  els.wlLevel.addEventListener("input", () => {
    view.level = Number(els.wlLevel.value);
    syncWindowLevel();
  });
  els.wlPreset.addEventListener("change", () => {
    if (els.wlPreset.value !== "custom") choosePreset(Number(els.wlPreset.value));
  });
  els.wlReset.addEventListener("click", resetView);
  els.invert.addEventListener("click", () => { view.invert = !view.invert; syncWindowLevel(); });
  els.rotate.addEventListener("click", rotate);
  els.fullscreen.addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", () => {
    els.fullscreen.textContent = document.fullscreenElement ? "Exit full screen"
                                                            : "Full screen";
  });
  els.toggleList.addEventListener("click", () => {
    listHiddenBySide = false;
    setListHidden(!els.app.classList.contains("list-hidden"));
  });
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
