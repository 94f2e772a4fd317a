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

# Debian's Chromium for the browser test of `attnreid serve` (tests/serve/test_browser.py)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "warning: no apt-get: install Chromium at $(CHROMIUM) for the browser test"; fi
browser: $(CHROMIUM)

test: $(STAMP) browser
	$(PY) -m pytest -q
	$(PY) -m ruff check src tests benchmarks

# the quick loop for developers: everything but the end-to-end (slow) tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m ruff check src tests benchmarks

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py

clean-venv:
	rm -rf $(VENV)
