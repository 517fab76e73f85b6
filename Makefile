# One set of commands for people, pre-commit and CI. `make help` lists them.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: help setup runtime mail kube-parts k8s-off run test test-postgres test-faults test-unit test-service test-e2e test-browser \
	test-k8s lint fmt \
	audit-deps bench mutate clean

help: ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## install uv (if missing) and the locked Python dependencies into .venv
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  { echo "installing uv from PyPI"; python3 -m pip install --quiet uv || \
	    python3 -m pip install --quiet --user uv || \
	    { echo "error: could not install uv; install it (https://docs.astral.sh/uv/) and retry"; \
	      exit 1; }; }
	@$(UV) sync --frozen --quiet

runtime: setup ## find or build the pinned Dapr runtime and Jaeger (minutes the first time, then cached)
	@$(UV) run --frozen devstack runtime >/dev/null
	@if [ "$$DEVSTACK_TRACING" != off ] && [ -z "$$OTLP_ENDPOINT" ]; then \
	  $(UV) run --frozen devstack jaeger >/dev/null; fi

# Mailpit is the local mail server. The end-to-end stacks need it, so the targets that run them
# stop here, with the build's reason, instead of failing once per test module; `make run` goes
# on without e-mail, saying so.
mail: setup ## find or build Mailpit, the local mail server (Go; minutes the first time, then cached)
	@$(UV) run --frozen devstack mail >/dev/null

kube-parts: setup ## check that the k8s tier can run here, then find or build its control plane (Go modules; ~10 min once, then cached)
	@$(UV) run --frozen devstack kube-parts >/dev/null

# K8S_TIER=off: `make test` neither builds nor runs the Kubernetes tier (pytest deselects
# tests/k8s), for a machine that cannot create namespaces (`make kube-parts` says why).
K8S_PARTS := $(if $(filter off OFF,$(K8S_TIER)),k8s-off,kube-parts)
export K8S_TIER

k8s-off:
	@echo "*** K8S_TIER=off: the Kubernetes tier (tests/k8s) is SKIPPED: not built, not run ***"

run: runtime ## run the mail server, redis, sentry, placement, scheduler, Jaeger, the apps and sidecars; REPLICAS=2 for two of each
	@$(UV) run --frozen devstack mail >/dev/null || \
	  echo "*** make run: Mailpit could not be built (why above): running WITHOUT e-mail ***" >&2
	@$(UV) run --frozen devstack run $(if $(REPLICAS),--replicas $(REPLICAS))

test: audit-deps runtime mail $(K8S_PARTS) ## audit, every tier on Redis, then e2e and faults on PostgreSQL too (K8S_TIER=off: without the Kubernetes tier)
	@$(UV) run --frozen pytest
	@if [ -z "$$STATE_STORE" ]; then $(MAKE) --no-print-directory test-postgres; fi

# PostgreSQL changes where workflows and app state live, not who may call, what input is
# refused, how traces travel or what the README says: those e2e files run once, on Redis
# (CI's time: a cold run must stay under 45 minutes on 2 cores).
PG_ONCE := docs first_hour input_and_errors observability readme_failure readme_tour security

test-postgres: runtime mail ## the end-to-end (but PG_ONCE) and fault tiers with PostgreSQL as the workflow state store
	@echo "end-to-end tier again, with PostgreSQL as the state store (STATE_STORE=postgres; once, on Redis: $(PG_ONCE))"
	@STATE_STORE=postgres $(UV) run --frozen pytest tests/e2e tests/faults \
	  $(PG_ONCE:%=--ignore=tests/e2e/test_%.py)

test-faults: runtime ## the fault tier, on one and two replicas: processes killed at random under a seeded workload
	@$(UV) run --frozen pytest tests/faults -s

test-unit: setup ## unit tests only (no sidecar, seconds)
	@$(UV) run --frozen pytest tests/unit

test-service: setup ## service tests only (FastAPI apps with a fake gateway)
	@$(UV) run --frozen pytest tests/service

test-e2e: runtime mail ## end-to-end tests only (real daprd, placement, scheduler, redis)
	@$(UV) run --frozen pytest tests/e2e

test-k8s: runtime kube-parts ## deploy/'s overlays applied to a real kube-apiserver with Dapr's injector
	@$(UV) run --frozen pytest tests/k8s

test-browser: runtime mail ## the web console in headless Chromium (installs Debian's chromium if root)
	@$(UV) run --frozen pytest tests/browser

lint: setup audit-deps ## ruff, mypy and the dependency audit
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

# pip-audit over the locked requirements (runtime and dev). It needs a vulnerability service:
# PyPI's per-release JSON API, or OSV. One pinned package is tried on each first; when neither
# can audit from this machine the audit is SKIPPED, saying why, rather than failing CI for want
# of a database. Once a service answers, a vulnerability or a package it could not audit fails.
AUDIT := $(UV) run --frozen pip-audit --disable-pip --no-deps --strict --progress-spinner off
UNREACHABLE := could not be audited|ConnectionError|ServiceError|Max retries|timed out

audit-deps: setup ## audit the locked dependencies for known vulnerabilities (pip-audit)
	@dir=$$(mktemp -d /tmp/order-approvals-audit.XXXXXX); trap 'rm -rf "$$dir"' EXIT; \
	$(UV) export --frozen --no-hashes --no-emit-project --format requirements-txt \
	  > "$$dir/requirements.txt" || exit 1; \
	grep -m1 '^pip-audit==' "$$dir/requirements.txt" > "$$dir/probe.txt"; \
	why=""; \
	for service in pypi osv; do \
	  $(AUDIT) -s $$service -r "$$dir/probe.txt" > "$$dir/out" 2> "$$dir/err"; rc=$$?; \
	  if [ $$rc -eq 0 ] || [ -s "$$dir/out" ]; then \
	    echo "audit-deps: pip-audit ($$service) over $$(grep -c '==' "$$dir/requirements.txt") locked packages"; \
	    $(AUDIT) -s $$service -r "$$dir/requirements.txt"; exit $$?; \
	  fi; \
	  if ! grep -qE '$(UNREACHABLE)' "$$dir/err"; then cat "$$dir/err" >&2; exit $$rc; fi; \
	  why="$$why  $$service: $$(grep -E '$(UNREACHABLE)' "$$dir/err" | tail -1)\n"; \
	done; \
	printf "audit-deps: SKIPPED, no vulnerability service can audit from this machine:\n%b" "$$why"

fmt: setup ## format and fix what ruff can
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

bench: runtime ## the six figures against bare Dapr (minutes; BENCH=--quick: under a minute; REPLICAS=2: M1 again on 2 replicas)
	@$(UV) run --frozen python bench/run.py $(BENCH) $(if $(REPLICAS),--replicas $(REPLICAS))

# Not part of `make test`: it runs the fast tiers once per mutant (docs/testing.md).
# MUTANTS=--again tests again what the last run did not kill; MUTANTS="name or glob ..." those.
mutate: setup ## mutation testing of the domain, workflows and subscription helper (~75 min)
	@nice -n 10 $(UV) run --frozen python tools/mutate.py $(MUTANTS)

clean: ## remove the run directory (logs, redis data); the runtime cache stays
	rm -rf .run
