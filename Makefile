# Two commands on a fresh machine with only Python: `make demo` and `make test`.
# Both create (or reuse) .venv and install the pinned dependencies once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast lint bench clean-venv browser boxmot

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

# BoxMOT, the tracker our exports are checked against (tests/retrieval/test_deploy.py), in a
# throw-away venv of its own: never a dependency of attnreid. It borrows .venv's packages
# (torch among them: BoxMOT 25 accepts any torch >= 2.2.1) through a .pth line, so only
# BoxMOT and what .venv lacks are installed. Without the registry the BoxMOT test skips.
BOXMOT_VENV := .venv-boxmot
BOXMOT_STAMP := $(BOXMOT_VENV)/.installed-boxmot-25.0.0
boxmot: $(STAMP)
	@test -f $(BOXMOT_STAMP) || { rm -rf $(BOXMOT_VENV) && $(PYTHON) -m venv $(BOXMOT_VENV) && \
	  $(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	    "$$($(BOXMOT_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/attnreid-venv.pth" && \
	  $(BOXMOT_VENV)/bin/pip install --quiet --disable-pip-version-check "boxmot[onnx]==25.0.0" && \
	  touch $(BOXMOT_STAMP); } || echo "note: BoxMOT could not be installed: its test will be skipped"

# ruff, and the import layers of pyproject.toml ([tool.importlinter]) checked by import-linter
lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks docs
	PYTHONPATH=src $(VENV)/bin/lint-imports --no-cache

test: $(STAMP) browser boxmot
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory lint

# the quick loop for developers: everything but the end-to-end (slow) tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(MAKE) --no-print-directory lint

bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py

clean-venv:
	rm -rf $(VENV) $(BOXMOT_VENV)
