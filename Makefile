# Two commands on a fresh machine with only Python: `make demo` and `make test`.
# Both create (or reuse) .venv and install the pinned dependencies once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast lint bench clean-venv browser

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attnreid demo

# Debian's Chromium for the browser test of `attnreid serve` (tests/serve/test_browser.py).
# Installing it needs root and apt-get; without them the browser test skips and says why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: $(CHROMIUM) is absent and installing it needs root and apt-get:" \
	  "the browser test will be skipped"; fi

# ruff, and the import layers of pyproject.toml ([tool.importlinter]) checked by import-linter
lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks docs
	PYTHONPATH=src $(VENV)/bin/lint-imports --no-cache

test: $(STAMP) browser
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory lint

# the quick loop for developers: everything but the end-to-end (slow) tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(MAKE) --no-print-directory lint

bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py

clean-venv:
	rm -rf $(VENV)
