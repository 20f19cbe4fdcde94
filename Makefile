# clipsearch — `make demo` runs the offline demo, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CLIP BPE vocabulary ships inside this wheel; it is downloaded, never installed.
BPE_WHEEL := .cache/wheels/open_clip_torch-3.3.0-py3-none-any.whl
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup browser test lint imports typecheck pytest demo bench clean vespa-package

setup: $(STAMP) $(BPE_WHEEL)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, as the local CPU build: anything else would pull several GB of CUDA packages.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(BPE_WHEEL): | $(BIN)/python
	$(BIN)/pip download --quiet --no-deps open-clip-torch==3.3.0 -d .cache/wheels

lint: setup
	$(BIN)/ruff check .

# The layer contract in pyproject.toml: the core never imports services/ or feeder/.
imports: setup
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Debian's chromium + chromedriver for the page test (skipped, with the reason, without them).
browser:
	sh scripts/install-browser.sh || echo "browser not installed: the page test will be skipped"

# Two workers, one test file each at a time (module fixtures stay per file): many tests wait on
# a server or a subprocess, so two workers fill both cores. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
pytest: setup browser
	$(BIN)/pytest -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: lint imports typecheck pytest

demo: setup
	$(BIN)/clipsearch demo

vespa-package: setup
	$(BIN)/clipsearch vespa package

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache data/demo
