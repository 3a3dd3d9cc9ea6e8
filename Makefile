# Every target sets itself up idempotently into .venv/ from a bare machine
# with Python 3.11+ and git.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BAML_CLIENT := bot/baml_client/__init__.py

.PHONY: setup serve test lint bench edit

setup: $(STAMP) $(BAML_CLIENT)

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
