# The README's commands. Every target installs what it needs first and is idempotent:
# a second `make install` on a set-up machine only compares timestamps.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := web/static/vendor/.installed
DEMO := demo/sounds
export DISTILL_HOME ?= $(CURDIR)/.distill-home

.PHONY: install chromium run test lint bench clean

install: $(STAMP) $(WEB_STAMP) chromium

# torch is pinned in the install step itself: an unpinned resolve would pull CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Browser libraries come from the npm registry, pinned by the lock file, and are served by
# distill itself (web/static/vendor), never from a CDN.
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	mkdir -p web/static/vendor
	cp web/node_modules/htmx.org/dist/htmx.min.js web/static/vendor/
	cp web/node_modules/wavesurfer.js/dist/wavesurfer.min.js web/static/vendor/
	cp web/node_modules/wavesurfer.js/dist/plugins/spectrogram.min.js web/static/vendor/wavesurfer-spectrogram.min.js
	cp web/node_modules/wavesurfer.js/LICENSE web/static/vendor/wavesurfer-LICENSE.txt
	touch $(WEB_STAMP)

# The browser tests drive Debian's Chromium through Playwright; no browser is downloaded.
chromium:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# The dashboard, with a small generated demo set to try: scan $(DEMO) on the New run page.
# `make run THREADS=N`: torch threads per process (default: each process's share of the cores).
# ROOTS: more folders the dashboard may read datasets from, ':'-separated
# (`make run ROOTS=/data/sfx:/data/kits`); they go to the server as DISTILL_ALLOWED_ROOTS.
ROOTS ?=
run: install
	test -d $(DEMO) || $(BIN)/python -c "from distill.audio.synth import make_demo_set; make_demo_set('$(DEMO)')"
	@echo "demo sounds to try: $(CURDIR)/$(DEMO)"
	DISTILL_ALLOWED_ROOTS="$(ROOTS)$${DISTILL_ALLOWED_ROOTS:+:$$DISTILL_ALLOWED_ROOTS}" \
		$(BIN)/distill serve --allow-root $(CURDIR)/demo $(if $(THREADS),--threads $(THREADS))

# The dashboard's scripts are linted by eslint, a pinned dev dependency in web/package.json
# (npm ci installs it with the browser libraries); web/eslint.config.mjs holds the style.
lint: install
	$(BIN)/ruff check distill tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	cd web && node_modules/.bin/eslint static

test: lint
	$(BIN)/pytest

bench: install
	test -d /usr/share/sounds/freedesktop/stereo || (apt-get update && apt-get install -y sound-theme-freedesktop)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo .distill-home bench/out
