# Every target sets itself up idempotently into .venv/ from a bare machine
# with Python 3.11+ and git; as root on Debian or Ubuntu it also installs
# bubblewrap, the sandbox repository code runs in.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BAML_CLIENT := bot/baml_client/__init__.py

.PHONY: setup system serve test lint bench edit

setup: system $(STAMP) $(BAML_CLIENT)

# bubblewrap: installed when missing and we may (root with apt), else named.
# Chromium likewise: the dashboard's browser test runs in it (skipped without it).
system:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (the dashboard's browser test runs in it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null; \
	  else \
	    echo "warning: chromium is missing; the dashboard's browser test will be skipped" \
	      "(apt-get install chromium)" >&2; \
	  fi; }
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing bubblewrap (repository code runs in its sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap </dev/null; \
	  else \
	    echo "warning: bubblewrap is missing; repository code will not run until it is installed" \
	      "(apt-get install bubblewrap, dnf install bubblewrap)" >&2; \
	  fi; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The BAML client is generated, never edited by hand.
$(BAML_CLIENT): $(STAMP) $(wildcard baml_src/*.baml)
	$(VENV)/bin/baml-cli generate --from baml_src
	touch $(BAML_CLIENT)

serve: setup
	$(VENV)/bin/patchling serve

test: setup
	$(PY) -m pytest -q

# Style, then types ([tool.mypy] in pyproject.toml names what is checked).
lint: setup
	$(VENV)/bin/ruff check bot tests bench
	$(VENV)/bin/ruff format --check bot tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench.apply
	$(PY) -m bench.context
	$(PY) -m bench.pipeline
	$(PY) -m bench.webhooks
	$(PY) -m bench.load
