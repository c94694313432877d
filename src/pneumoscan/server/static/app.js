// pneumoscan upload page: pick or drop a file, preview it, post it, show the result.
// Plain JavaScript, no libraries: the page must work with no internet.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    input: $("file-input"), dropzone: $("dropzone"), preview: $("preview"),
    filename: $("filename"), previewImage: $("preview-image"), previewNote: $("preview-note"),
    status: $("status"), error: $("error"), result: $("result"),
    scopeWarning: $("scope-warning"), scopeReason: $("scope-reason"),
    label: $("label"), probabilityText: $("probability-text"), bar: $("bar"),
    barFill: $("bar-fill"), barThreshold: $("bar-threshold"), cause: $("cause"),
    causeText: $("cause-text"), figure: $("figure"), resultImage: $("result-image"),
    toggle: $("heatmap-toggle"), modelVersion: $("model-version"), elapsed: $("elapsed"),
    footerModel: $("footer-model"),
  };
  let maxUploadBytes = 25 * 1024 * 1024;
  let previewUrl = null;
  let current = 0; // id of the latest upload: answers to older ones are dropped
  let images = { heatmap: null, plain: null };

  const percent = (p) => (100 * p).toFixed(1) + "%";

  function show(el, visible) { el.hidden = !visible; }

  function showError(message) {
    els.error.textContent = message;
    show(els.error, true);
    els.status.textContent = "";
  }

  function reset() {
    show(els.error, false);
    show(els.result, false);
    show(els.figure, false);
    els.status.textContent = "";
    if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
    images = { heatmap: null, plain: null };
  }

  function isBrowserImage(file) {
    return /^image\/(jpeg|png)$/.test(file.type) || /\.(jpe?g|png)$/i.test(file.name);
  }

  async function loadHealth() {
    try {
      const response = await fetch("/api/v1/health");
      if (!response.ok) throw new Error(String(response.status));
      const health = await response.json();
      maxUploadBytes = health.max_upload_bytes;
      els.footerModel.textContent = "model " + health.model + " (" + health.backend + ")";
    } catch (err) {
      els.footerModel.textContent = "the server is not answering";
    }
  }

  function handleFile(file) {
    if (!file) return;
    reset();
    const id = ++current;
    show(els.preview, true);
    els.filename.textContent = file.name + " (" + (file.size / 1024 / 1024).toFixed(2) + " MB)";
    if (isBrowserImage(file)) {
      previewUrl = URL.createObjectURL(file);
      els.previewImage.src = previewUrl;
      show(els.previewImage, true);
      show(els.previewNote, false);
    } else {
      show(els.previewImage, false);
      show(els.previewNote, /\.(dcm|dicom)$/i.test(file.name) || /dicom/.test(file.type));
    }
    if (file.size === 0) {
      showError("This file is empty (0 bytes). Choose a JPEG, PNG or DICOM chest X-ray.");
      return;
    }
    if (file.size > maxUploadBytes) {
      showError("This file is " + (file.size / 1024 / 1024).toFixed(1) + " MB; the limit is " +
                (maxUploadBytes / 1024 / 1024).toFixed(0) + " MB. Export a smaller image.");
      return;
    }
    upload(file, id);
  }

  async function upload(file, id) {
    els.status.textContent = "Analysing " + file.name + "…";
    const form = new FormData();
    form.append("file", file, file.name);
    const url = "/api/v1/predict?heatmap=true" + (isBrowserImage(file) ? "" : "&image=true");
    let response, body;
    try {
      response = await fetch(url, { method: "POST", body: form });
      body = await response.json().catch(() => null);
    } catch (err) {
      if (id === current) showError("Could not reach the server. Is pneumoscan still running?");
      return;
    }
    if (id !== current) return;
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail
        : "the server answered " + response.status;
      showError("This file could not be analysed: " + detail);
      return;
    }
    els.status.textContent = "";
    render(body);
  }

  function render(result) {
    const positive = result.probability >= result.threshold;
    els.label.textContent = result.label;
    els.label.className = "label-value " + (positive ? "positive" : "negative");
    els.probabilityText.textContent = "P(pneumonia) = " + percent(result.probability) +
      " (threshold " + percent(result.threshold) + ")";
    els.barFill.style.width = percent(result.probability);
    els.barThreshold.style.left = percent(result.threshold);
    els.bar.setAttribute("aria-label", "Probability of pneumonia " +
      percent(result.probability) + "; threshold " + percent(result.threshold));

    show(els.scopeWarning, !result.in_scope);
    els.scopeReason.textContent = result.scope_reason || "unlike the training radiographs";

    const hasCause = positive && result.cause && result.cause_probability !== null;
    show(els.cause, Boolean(hasCause));
    if (hasCause) {
      els.causeText.textContent = "more likely " + result.cause + " pneumonia (P(bacterial) = " +
        percent(result.cause_probability) + ").";
    }

    images.heatmap = result.heatmap_png ? "data:image/png;base64," + result.heatmap_png : null;
    images.plain = result.image_png ? "data:image/png;base64," + result.image_png : previewUrl;
    updateFigure();
    show(els.figure, Boolean(images.heatmap || images.plain));

    // The figure now shows the image (with or without the heat map): drop the preview.
    show(els.previewImage, false);
    show(els.previewNote, false);
    els.modelVersion.textContent = result.model;
    els.elapsed.textContent = "answered in " + Math.round(result.elapsed_ms) + " ms";
    show(els.result, true);
  }

  function updateFigure() {
    const withHeatmap = els.toggle.checked && images.heatmap;
    els.resultImage.src = withHeatmap ? images.heatmap : (images.plain || images.heatmap);
    els.resultImage.alt = withHeatmap
      ? "The X-ray with the heat map on top: warm colours mark the regions that raised the " +
        "pneumonia probability"
      : "The X-ray without the heat map";
  }

  els.input.addEventListener("change", () => handleFile(els.input.files[0]));
  els.toggle.addEventListener("change", updateFigure);

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
    if (files && files.length) handleFile(files[0]);
  });
  // A file dropped outside the zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  loadHealth();
})();
