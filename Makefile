# One set of commands for people, pre-commit and CI. `make help` lists them.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: help setup runtime run test test-unit test-service test-e2e lint fmt bench clean

help: ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## install uv (if missing) and the locked Python dependencies into .venv
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  { echo "installing uv from PyPI"; python3 -m pip install --quiet uv || \
	    python3 -m pip install --quiet --user uv || \
	    { echo "error: could not install uv; install it (https://docs.astral.sh/uv/) and retry"; \
	      exit 1; }; }
	@$(UV) sync --frozen --quiet

runtime: setup ## find or build the pinned Dapr runtime (minutes the first time, then cached)
	@$(UV) run --frozen devstack runtime >/dev/null

run: runtime ## run redis, placement, scheduler and the three apps with sidecars; Ctrl-C stops
	@$(UV) run --frozen devstack run

test: runtime ## every test tier: unit, service, end-to-end on the real runtime
	@$(UV) run --frozen pytest

test-unit: setup ## unit tests only (no sidecar, seconds)
	@$(UV) run --frozen pytest tests/unit

test-service: setup ## service tests only (FastAPI apps with a fake gateway)
	@$(UV) run --frozen pytest tests/service

test-e2e: runtime ## end-to-end tests only (real daprd, placement, scheduler, redis)
	@$(UV) run --frozen pytest tests/e2e

test-browser: runtime ## the web console in headless Chromium (installs Debian's chromium if root)
	@$(UV) run --frozen pytest tests/browser

lint: setup ## ruff and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

fmt: setup ## format and fix what ruff can
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

bench: runtime ## benchmarks against bare Dapr in the same run (minutes; prints a table)
	@$(UV) run --frozen python bench/run.py

clean: ## remove the run directory (logs, redis data); the runtime cache stays
	rm -rf .run
