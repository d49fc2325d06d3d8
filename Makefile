# payment-migration — every target installs what it needs; a second run skips the installs.
# Environment: PAYMENT_MIGRATION_ENV=<env> selects config/<env>.toml (default dev).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
PIPENV_VERSION := 2026.10.3
CHECKOV_VERSION := 3.3.30
PARLIAMENT_VERSION := 1.6.4
RELADIFF_VERSION := 0.6.0
VENV := .venv
PY := $(VENV)/bin/python
# Tools that must not share the app's dependency set get their own environments.
SCAN_VENV := .venv-scan
BENCH_VENV := .venv-bench
NODE_BIN := $(CURDIR)/node_modules/.bin

# The CDK that synthesizes (lib/cdk reads PAYMENT_MIGRATION_CDK): cdktf, pinned in Pipfile.lock, or
# CDK Terrain, its community fork, pinned in requirements-cdktn.txt and installed into its own
# environment (it needs a newer constructs than the cdktf pins allow). Both write cdktf.out/.
CDK ?= $(or $(PAYMENT_MIGRATION_CDK),cdktf)
CDKTN_VENV := .venv-cdktn
ifeq ($(CDK),cdktf)
SYNTH_PY := $(PY)
SYNTH_ENV := $(VENV)/.synced
else ifeq ($(CDK),cdktn)
SYNTH_PY := $(CDKTN_VENV)/bin/python
SYNTH_ENV := $(CDKTN_VENV)/.installed
else
$(error CDK=$(CDK): expected cdktf (the default) or cdktn)
endif

# The jsii runtime and the cdktf CLI run on the Node 22 LTS that package.json pins, not the
# machine's Node (an end-of-life Node makes jsii print a banner on every run).
export PATH := $(NODE_BIN):$(PATH)
export JSII_NODE := $(NODE_BIN)/node
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
# No telemetry calls from the cdktf CLI or Terraform.
export CHECKPOINT_DISABLE := 1

.PHONY: help install synth validate test test-fast compare-cdk deploy-local rehearse chaos emulator scan bench postgres clean diagram

help:
	@echo "make synth         synthesize every stack of \$$PAYMENT_MIGRATION_ENV (default dev) into cdktf.out/ (CDK=cdktn: with CDK Terrain)"
	@echo "make validate      synth, then terraform init -backend=false + validate on every stack (offline mirror)"
	@echo "make test          validate, then run the test suite (installs everything first)"
	@echo "make test-fast     the unit tests and the synth assertions only (no PostgreSQL, moto or long runs): the edit-test loop"
	@echo "make compare-cdk   synthesize with cdktf and with cdktn into build/compare-cdk/, fail unless stacks and addresses match, list the rest"
	@echo "make deploy-local  apply every stack of config/local.toml to a moto server, re-plan, write build/deploy-local/"
	@echo "make rehearse      the whole runbook locally (moto, two PostgreSQL servers, a payment load): build/rehearsal/report.json"
	@echo "make chaos         the cutover and the rollback under faults at every Task state, under load, judged by a checker: build/chaos/report.json (FAULTS=file.py adds faults)"
	@echo "make emulator      serve the local environment's moto server (127.0.0.1:4566) until Ctrl-C; writes build/local/env.sh for cdktf deploy <stack>-local"
	@echo "make scan          checkov on cdktf.out, the dev and prod examples and the local deploy's plans; parliament on their IAM policies"
	@echo "make bench         run the benchmarks and print their figures"
	@echo "make diagram       draw docs/architecture.png and .svg (stacks, main resources, cross-stack reads) from cdktf.out"
	@echo "make install       Python deps (Pipfile.lock) into .venv, cdktf CLI and Node 22 (package-lock.json)"
	@echo "make postgres      install the PostgreSQL server binaries the tests start, if absent"
	@echo "make clean         remove build output (cdktf.out, build/)"
	@echo "make help          this list"

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

$(CDKTN_VENV)/.installed: requirements-cdktn.txt
	@echo "==> installing cdktn and cdktn-provider-aws from requirements-cdktn.txt into $(CDKTN_VENV)"
	$(PYTHON_BOOTSTRAP) -m venv $(CDKTN_VENV)
	$(CDKTN_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
		-r requirements-cdktn.txt
	@touch $@

synth: install $(SYNTH_ENV)
	PAYMENT_MIGRATION_CDK=$(CDK) $(SYNTH_PY) main.py
	@echo "==> wrote $$(ls cdktf.out/stacks | tr '\n' ' ')"

# Terraform's own check of every synthesized stack, offline: the AWS provider comes from the
# machine's filesystem mirror (found by lib/terraform.py, or PAYMENT_MIGRATION_TF_MIRROR).
validate: synth
	$(PY) -m lib.terraform validate

# The local environment (config/local.toml) applied to a moto server on this machine.
deploy-local: install
	$(PY) -m lib.local.deploy --env local

# The operator's runbook end to end on this machine, every payment counted (lib/local/rehearsal).
rehearse: install postgres
	$(PY) -m lib.local.rehearsal --env local $(if $(MODE),--mode $(MODE))

# Faults × Task states of the cutover and the writer rollback under a payment load, each trial judged
# by an independent checker (lib/local/chaos). FAULTS=file.py adds the faults that file defines;
# CHAOS_FAULTS, CHAOS_STATES, CHAOS_MACHINES, CHAOS_TRIAL, CHAOS_SEED pick and repeat trials.
chaos: install postgres
	PAYMENT_MIGRATION_ENV=local FAULTS="$(FAULTS)" $(PY) -m lib.local.chaos

emulator: install
	$(PY) -m lib.local.emulator --env local

$(SCAN_VENV)/.installed: Makefile
	@echo "==> installing checkov $(CHECKOV_VERSION) and parliament $(PARLIAMENT_VERSION) into $(SCAN_VENV)"
	$(PYTHON_BOOTSTRAP) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)" \
		"parliament==$(PARLIAMENT_VERSION)"
	@touch $@

# The security gate. checkov on every synthesized stack: $PAYMENT_MIGRATION_ENV's (cdktf.out) and
# the shipped examples' (SCAN_ENVS, each synthesized into build/scan/<env>); then, when the local
# deploy has run (CI runs it first; SCAN_PLANS=required makes it a must), checkov on each stack's
# plan with every value resolved, and parliament on the plans' IAM policies (.parliament.yaml).
# checkov skips nothing and reports in JSON; lib/checkov_gate.py fails on any finding it does not
# suppress for exactly that resource, with its reason (checkov reads no per-resource skip in JSON).
PLANS := build/deploy-local/plans
SCAN_DIR := build/scan
SCAN_ENVS := dev prod
scan: synth $(SCAN_VENV)/.installed
	@current="$${PAYMENT_MIGRATION_ENV:-dev}"; sources=cdktf.out/stacks; \
	for env in $(SCAN_ENVS); do \
		if [ "$$env" != "$$current" ]; then \
			echo "==> synthesizing $$env into $(SCAN_DIR)/$$env for the scan"; \
			CDKTF_OUTDIR=$(SCAN_DIR)/$$env PAYMENT_MIGRATION_ENV=$$env PAYMENT_MIGRATION_CONFIG= \
				PAYMENT_MIGRATION_CDK=$(CDK) $(SYNTH_PY) main.py; \
			sources="$$sources $(SCAN_DIR)/$$env/stacks"; \
		fi; \
	done; \
	$(PY) -m lib.checkov_gate prepare $(SCAN_DIR)/stacks $$sources
	$(SCAN_VENV)/bin/checkov --config-file .checkov.yaml > $(SCAN_DIR)/checkov-synth.json
	$(PY) -m lib.checkov_gate check synth $(SCAN_DIR)/checkov-synth.json
	@if ls $(PLANS)/*.json >/dev/null 2>&1; then \
		$(SCAN_VENV)/bin/checkov --config-file .checkov-plan.yaml > $(SCAN_DIR)/checkov-plan.json && \
		$(PY) -m lib.checkov_gate check plan $(SCAN_DIR)/checkov-plan.json && \
		$(SCAN_VENV)/bin/python -m lib.policy_audit $(PLANS) --suppressions .parliament.yaml; \
	elif [ "$${SCAN_PLANS:-}" = required ]; then \
		echo "error: no plans in $(PLANS): run make deploy-local first" >&2; exit 1; \
	else \
		echo "==> no local deploy plans in $(PLANS): plan scan and parliament skipped (make deploy-local)"; \
	fi

$(BENCH_VENV)/.installed: Makefile
	@echo "==> installing reladiff $(RELADIFF_VERSION) into $(BENCH_VENV) (benchmark only)"
	$(PYTHON_BOOTSTRAP) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check "reladiff==$(RELADIFF_VERSION)" "psycopg2-binary==2.9.13"
	@touch $@

# Figures, not tests. BENCH_ROWS sets the validation benchmark's table size (default 10,000,000);
# CUTOVER_BENCH_ROWS the payments tables the data cutover's write pause is measured with.
BENCH_ROWS ?= 10000000
CUTOVER_BENCH_ROWS ?= 1000000 10000000
bench: install postgres $(BENCH_VENV)/.installed
	$(PY) bench/synth_bench.py
	$(PY) bench/rollback_bench.py
	$(PY) bench/fence_bench.py --sessions 50 --runs 5
	$(PY) bench/cutover_bench.py --rows $(CUTOVER_BENCH_ROWS) --rate 200
	$(PY) bench/validation_bench.py --rows $(BENCH_ROWS) --reladiff $(BENCH_VENV)/bin/reladiff

test: install postgres validate
	$(PY) -m pytest

# The edit-test loop: what needs no server and runs in seconds (markers in pytest.ini).
test-fast: install
	$(PY) -m pytest -m "not postgres and not moto and not slow"

# cdktf's output against CDK Terrain's (lib/compare_cdk.py): $PAYMENT_MIGRATION_ENV synthesized by
# each, one after the other and timed, into build/compare-cdk/{cdktf,cdktn}. Fails when the stacks,
# the addresses in them or their dependencies differ; lists every other difference (the provider
# pin, attributes, the arguments the newer bindings add or drop) in build/compare-cdk/report.json.
compare-cdk: install $(CDKTN_VENV)/.installed
	$(PY) -m lib.compare_cdk --cdktn-python $(CDKTN_VENV)/bin/python

# The tests start their own PostgreSQL server with initdb/pg_ctl; install the binaries if absent.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "==> installing PostgreSQL server binaries"; apt-get update -qq && apt-get install -y -qq postgresql; }

# The architecture picture, drawn from the synthesized app by lib/diagram.py with Graphviz's dot
# (installed when absent); commit docs/ after a change to the stacks.
diagram: synth
	@command -v dot >/dev/null || \
		{ echo "==> installing Graphviz"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; }
	$(PY) -m lib.diagram

clean:
	rm -rf cdktf.out build
