# Real-time profile engine: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# The CPU build of torch from the local wheel cache; never a multi-GB CUDA build here.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# System tools from Debian: Redis for the store, docker-compose only to validate the compose file.
APT_TOOLS := redis-server:redis-server docker-compose:docker-compose

.PHONY: system
system:
	@missing=""; for t in $(APT_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

.PHONY: setup
setup: $(STAMP) system ## Install everything: venv, Python packages, redis-server, docker-compose

.PHONY: demo
demo: setup ## Run broker, Redis, worker and traffic with a live view (Ctrl-C stops all)
	$(BIN)/python -m stream demo

.PHONY: test
test: setup ## Run the whole test suite (unit + integration on a real broker and Redis)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: setup ## Unit tests only (no broker, no Redis)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: soak
soak: setup ## Fault-injection and burst tests at soak size (60k events per fault, 150k burst)
	RTP_SOAK_EVENTS=$${RTP_SOAK_EVENTS:-60000} RTP_SOAK_RATE=$${RTP_SOAK_RATE:-1000} \
	  RTP_BURST_EVENTS=$${RTP_BURST_EVENTS:-150000} \
	  $(BIN)/python -m pytest -m faults -s --timeout 1800 \
	  tests/integration/test_faults.py tests/integration/test_burst.py $(PYTEST_ARGS)

.PHONY: lint
lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

.PHONY: up
up: setup ## Start the embedded broker and Redis in the background
	$(BIN)/python -m stream dev up

.PHONY: down
down: setup ## Stop the embedded broker and Redis
	$(BIN)/python -m stream dev down

.PHONY: worker
worker: setup ## Run one worker in the foreground (needs `make up` or real services)
	$(BIN)/python -m stream worker

.PHONY: produce
produce: setup ## Send generated traffic (RATE=500 DURATION=60)
	$(BIN)/python -m stream produce --rate $${RATE:-500} --duration $${DURATION:-60}

.PHONY: bench
bench: setup ## Throughput benchmark: raw aiokafka vs Faust no-op vs pipeline (writes BENCHMARKS.md)
	$(BIN)/python benchmarks/throughput.py --write
	$(BIN)/python benchmarks/breakdown.py --write

.PHONY: settings-doc
settings-doc: setup ## Regenerate the README's settings table from stream/settings.py
	$(BIN)/python -m stream.settings README.md

.PHONY: clean
clean: ## Stop services and remove local state (.dev)
	-$(BIN)/python -m stream dev down
	rm -rf .dev
