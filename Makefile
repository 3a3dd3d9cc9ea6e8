# Every target sets itself up idempotently into .venv/ from a bare machine
# with Python 3.11+ and git; as root on Debian or Ubuntu it also installs
# bubblewrap, the sandbox repository code runs in, and what some tests need
# (chromium, redis-server, and the Node, TypeScript and Go toolchains the
# examples' tests run on).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BAML_CLIENT := bot/baml_client/__init__.py

.PHONY: setup system serve test lint bench edit

setup: system $(STAMP) $(BAML_CLIENT)

# $(call need,PROGRAM,PACKAGE,WHY): install PACKAGE when PROGRAM is missing and
# we may (root with apt), else say what is missing and why it matters.
need = command -v $(1) >/dev/null || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "installing $(2): $(3)"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) </dev/null; \
  else \
    echo "warning: $(2) is missing ($(3)); install it (apt-get install $(2), dnf install $(2))" >&2; \
  fi; }

system:
	@$(call need,bwrap,bubblewrap,repository code runs in its sandbox)
	@$(call need,chromium,chromium,the dashboard's browser test runs in it and is skipped without it)
	@$(call need,redis-server,redis-server,the Redis-mode tests run against it and are skipped without it)
	@$(call need,node,nodejs,the TypeScript example's tests run on it and are skipped without it)
	@$(call need,npm,npm,package.json test scripts run through it)
	@$(call need,tsc,node-typescript,the TypeScript example compiles with it)
	@$(call need,go,golang-go,the Go example's tests run on it and are skipped without it)

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

# One pytest worker per core: the tests wait on subprocesses (git, bubblewrap,
# servers) more than they compute.
test: setup
	$(PY) -m pytest -q -n auto

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
	$(PY) -m bench.workers
