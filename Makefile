# pneumoscan: `make run` serves the web app with the shipped model; `make test` runs the suite.
VENV ?= .venv
# `make run` and the services use a runtime-only venv: ONNX Runtime, the web app and the
# DICOM node, no PyTorch (see "Two commands" in the README for its size and install time).
RUNTIME_VENV ?= .venv-runtime
RUNTIME_BIN := $(RUNTIME_VENV)/bin
PYTHON ?= python3
PIP := $(VENV)/bin/pip
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1

.PHONY: install install-dev install-runtime run test lint browser dicom-tools bench clean

# The venv is rebuilt when pyproject.toml changes. torch==2.14.1 / torchvision==0.29.1 are
# pinned to the builds that pip finds on this machine's disk (no download).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[torch,onnx,export,serve,dicom-node]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e ".[torch,onnx,export,serve,dicom-node,dev]"
	touch $@

install: $(VENV)/.installed

# The runtime: the shipped model on ONNX Runtime, the web app and the DICOM node. Not
# editable, so that the services run what was installed, not the working tree.
$(RUNTIME_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/pip install --quiet ".[onnx,serve,dicom-node]"
	touch $@

install-runtime: $(RUNTIME_VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install-runtime
	$(RUNTIME_BIN)/pneumoscan serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser test (never a downloaded browser build).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "not root: cannot apt-get chromium; the browser test will be skipped"; fi; \
	fi

# Debian's Orthanc (a real PACS) and dcmtk (storescu, dsrdump) for the DICOM node's tests,
# and a C compiler for their bind shim (Orthanc 1.10 cannot be told to listen on 127.0.0.1
# only). The tests start their own Orthanc: the Debian service, which would listen on every
# interface, is stopped and disabled. dicom3tools: dciodvfy, the independent validator every
# SR and Secondary Capture the project writes must pass.
dicom-tools:
	@if [ ! -x /usr/sbin/Orthanc ] || [ ! -x /usr/bin/storescu ] || ! command -v cc >/dev/null \
	    || ! command -v dciodvfy >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc dcmtk gcc dicom3tools >/dev/null \
	      && (systemctl disable --now orthanc >/dev/null 2>&1 || service orthanc stop >/dev/null 2>&1 || true)) \
	      || echo "orthanc/dcmtk/dicom3tools could not be installed: the DICOM node's Orthanc and dciodvfy tests will be skipped"; \
	  else echo "not root: cannot apt-get orthanc dcmtk dicom3tools; the DICOM node's Orthanc and dciodvfy tests will be skipped"; fi; \
	fi

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src benchmarks

test: install-dev browser dicom-tools lint
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) build .pytest_cache .ruff_cache .mypy_cache
