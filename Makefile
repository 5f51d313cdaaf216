# The two commands: `make run` and `make test`. Nothing needed beyond Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# pytest's temporary folders live in the checkout: another checkout's test run, which
# prunes all but its own three newest, can then never delete a running test's files.
export PYTEST_DEBUG_TEMPROOT := $(CURDIR)/.pytest-tmp

.PHONY: run test faults lint typecheck schema clean system-packages vendor-htmx bench screenshots

# Debian packages the test suite uses: Go and golang.org/x/mod, whose reference tlog and
# note packages read our logs as any standard tlog-tiles client would; Chromium, which the
# console's browser tests drive through Playwright (never a browser download of its own).
SYSTEM_PACKAGES := golang-go golang-golang-x-mod-dev
BROWSER_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "trailseal needs Python 3.11 or newer"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A C compiler builds trailseal.integrity._jcs (verify's quick canonical check) and, with
# OpenSSL's headers, trailseal.integrity._rfc6962 (RFC 6962 hashing over runs); the
# install goes on without them, and the tests then say the modules are missing.
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py src/trailseal/integrity/*.c
	@command -v cc >/dev/null && $(BIN)/python -c 'import os, sysconfig, sys; \
	  sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))' && \
	  echo '#include <openssl/sha.h>' | cc -E - >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc python3-dev libssl-dev; }
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/trailseal serve --demo

test: $(VENV)/.installed system-packages lint typecheck
	@mkdir -p $(PYTEST_DEBUG_TEMPROOT)
	$(BIN)/python -m pytest -q

# Refresh the console's screenshots in docs/img/ (the README shows them).
screenshots: $(VENV)/.installed system-packages
	@mkdir -p $(PYTEST_DEBUG_TEMPROOT)
	TRAILSEAL_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/ui

# The fault-injection suite alone, printing its counts; FAULT_ROUNDS=100 for longer runs.
faults: $(VENV)/.installed system-packages
	@mkdir -p $(PYTEST_DEBUG_TEMPROOT)
	$(BIN)/python -m pytest -q -s tests/faults

# The benchmark suite against its baselines (docs/benchmarks.md): quick sizes, a few
# minutes; FULL=1 for the full sizes (10M events, hours). ARGS passes more, such as
# ARGS='--only verify,export'. Installs the bench extra (matplotlib, pymerkle,
# django-auditlog), which make test does not.
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py $(if $(FULL),--full) $(ARGS)

system-packages:
	@command -v go >/dev/null && [ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); }
	@[ -x /usr/bin/chromium ] || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(BROWSER_PACKAGES); }

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench examples

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Regenerate the committed JSON Schema after changing trailseal.model.
schema: $(VENV)/.installed
	$(BIN)/trailseal schema > schema/event-v1.schema.json

# Refresh the console's vendored htmx from the npm registry's htmx.org package (pinned
# version), and record its SHA-256 in VENDORED.md, which a test checks the file against.
HTMX_VERSION := 2.0.11
STATIC := src/trailseal/web/static
vendor-htmx:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null && tar xzf htmx.org-$(HTMX_VERSION).tgz) && \
	  cp "$$tmp/package/dist/htmx.min.js" $(STATIC)/htmx.min.js && \
	  cp "$$tmp/package/LICENSE" $(STATIC)/htmx.LICENSE && \
	  sum=$$(sha256sum $(STATIC)/htmx.min.js | cut -d' ' -f1) && \
	  sed -i -e "s/^- version: .*/- version: $(HTMX_VERSION)/" \
	         -e "s/^- sha256 of htmx.min.js: .*/- sha256 of htmx.min.js: $$sum/" $(STATIC)/VENDORED.md && \
	  echo "htmx $(HTMX_VERSION) $$sum"

clean:
	rm -rf $(VENV) .pytest_cache .pytest-tmp .mypy_cache .ruff_cache
