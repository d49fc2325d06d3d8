# payment-migration — every target installs what it needs; a second run skips the installs.
# Environment: PAYMENT_MIGRATION_ENV=<env> selects config/<env>.toml (default dev).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
PIPENV_VERSION := 2026.10.3
CHECKOV_VERSION := 3.3.30
RELADIFF_VERSION := 0.6.0
VENV := .venv
PY := $(VENV)/bin/python
# Tools that must not share the app's dependency set get their own environments.
SCAN_VENV := .venv-scan
BENCH_VENV := .venv-bench
NODE_BIN := $(CURDIR)/node_modules/.bin

# The jsii runtime and the cdktf CLI run on the Node 22 LTS that package.json pins, not the
# machine's Node (an end-of-life Node makes jsii print a banner on every run).
export PATH := $(NODE_BIN):$(PATH)
export JSII_NODE := $(NODE_BIN)/node
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
# No telemetry calls from the cdktf CLI or Terraform.
export CHECKPOINT_DISABLE := 1

.PHONY: help install synth test scan bench postgres clean

help:
	@echo "make synth   synthesize every stack of \$$PAYMENT_MIGRATION_ENV (default dev) into cdktf.out/"
	@echo "make test    run the test suite (installs everything first)"
	@echo "make scan    synthesize, then run checkov on cdktf.out/stacks"
	@echo "make bench   run the benchmarks and print their figures"
	@echo "make clean   remove build output (cdktf.out, build/)"

install: $(VENV)/.synced node_modules/.package-lock.json

$(VENV)/.synced: Pipfile.lock
	@echo "==> installing Python dependencies from Pipfile.lock into $(VENV)"
	@$(PYTHON_BOOTSTRAP) -m pipenv --version >/dev/null 2>&1 || \
		$(PYTHON_BOOTSTRAP) -m pip install --quiet --disable-pip-version-check "pipenv==$(PIPENV_VERSION)"
	$(PYTHON_BOOTSTRAP) -m pipenv sync --dev
	@touch $@

node_modules/.package-lock.json: package-lock.json package.json
	@echo "==> installing cdktf-cli and Node 22 from package-lock.json"
	npm ci --no-audit --no-fund
	@touch $@

synth: install
	$(PY) main.py
	@echo "==> wrote $$(ls cdktf.out/stacks | tr '\n' ' ')"

$(SCAN_VENV)/.installed: Makefile
	@echo "==> installing checkov $(CHECKOV_VERSION) into $(SCAN_VENV)"
	$(PYTHON_BOOTSTRAP) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	@touch $@

# checkov on every synthesized stack; .checkov.yaml holds the settings and each justified skip.
scan: synth $(SCAN_VENV)/.installed
	$(SCAN_VENV)/bin/checkov --config-file .checkov.yaml

$(BENCH_VENV)/.installed: Makefile
	@echo "==> installing reladiff $(RELADIFF_VERSION) into $(BENCH_VENV) (benchmark only)"
	$(PYTHON_BOOTSTRAP) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check "reladiff==$(RELADIFF_VERSION)" "psycopg2-binary==2.9.13"
	@touch $@

# Figures, not tests. BENCH_ROWS sets the validation benchmark's table size (default 10,000,000).
BENCH_ROWS ?= 10000000
bench: install postgres $(BENCH_VENV)/.installed
	$(PY) bench/synth_bench.py
	$(PY) bench/rollback_bench.py
	$(PY) bench/validation_bench.py --rows $(BENCH_ROWS) --reladiff $(BENCH_VENV)/bin/reladiff

test: install postgres
	$(PY) -m pytest

# The tests start their own PostgreSQL server with initdb/pg_ctl; install the binaries if absent.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "==> installing PostgreSQL server binaries"; apt-get update -qq && apt-get install -y -qq postgresql; }

clean:
	rm -rf cdktf.out build
