# stripe-ledger: `make demo` to see it work, `make test` for the whole suite with real services.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: install demo services services-down lint test test-fast bench clean help
BENCH_SCALE ?= full

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create the virtual environment and install the project

demo: install  ## see it work: a signed Stripe history through the embedded mode, then the reports
	$(VENV)/bin/stripe-ledger demo

services:  ## start PostgreSQL, Kafka and ElasticMQ (SQS) (prints the export lines)
	bash scripts/services.sh up --sqs

services-down:  ## stop what `make services` started
	bash scripts/services.sh down

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The README's test command: installs, starts the real services, lints, runs every test.
# The crash loop runs at the issue's full size (50,000 events) here; `make test-fast` skips it.
# The dependency audit warns instead of failing where the vulnerability service gives no data
# (as on machines that reach only a PyPI mirror): see docs/RELIABILITY.md.
test: install  ## everything: tools, audit, services, lint, the whole pytest suite
	bash scripts/test-tools.sh
	AUDIT_ON_UNREACHABLE=warn bash scripts/audit.sh
	$(MAKE) lint
	eval "$$(bash scripts/services.sh up --sqs)" && LEDGER_CRASH_LOOP_EVENTS=50000 $(PY) -m pytest -q

test-fast: install  ## the suite without the slow crash tests
	eval "$$(bash scripts/services.sh up --sqs)" && $(PY) -m pytest -q -m "not slow"

bench: install  ## benchmarks beside their baselines, BENCH_SCALE=smoke|small|full (~10 min at full): bench/results/
	eval "$$(bash scripts/services.sh up)" && BENCH_SCALE=$(BENCH_SCALE) $(PY) -m bench.run

clean:  ## remove the virtual environment and caches (not the services' data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
