# Coordo — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES := identity dossier cercle taches documents agenda notify
PACKAGES := -e chassis $(foreach s,$(SERVICES),-e services/$(s)) -e gateway -e web -e .
STAMP := $(VENV)/.installed
AXE := tests/browser/node_modules/axe-core/axe.min.js

# This machine's PostgreSQL and RabbitMQ; set them empty to use testcontainers (Docker).
export COORDO_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432
export COORDO_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672//

.PHONY: run test install lint typecheck pytest distributed token bench clean

$(STAMP): chassis/pyproject.toml gateway/pyproject.toml web/pyproject.toml pyproject.toml requirements-dev.txt $(foreach s,$(SERVICES),services/$(s)/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PACKAGES) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) $(AXE)

# axe-core for the browser tests' accessibility checks (npm, pinned by its lock file).
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $(AXE)

## Start the whole suite in embedded mode (one process, SQLite under ./var, demo accounts)
run: $(STAMP)
	$(VENV)/bin/coordo run

## Lint, type-check and run every test (unit, service, contract, end-to-end, reliability, security)
test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy chassis/chassis $(foreach s,$(SERVICES),$(wildcard services/$(s)/$(s)/domain*.py))

pytest: $(STAMP) $(AXE)
	$(VENV)/bin/pytest -q

## The distributed mode on this machine: PostgreSQL + RabbitMQ, one process per component
distributed: $(STAMP)
	$(VENV)/bin/coordo distributed

## An access token for a demo account of the running suite: make token ACCOUNT=medecin
ACCOUNT ?= coordinateur
token: $(STAMP)
	@$(VENV)/bin/coordo token $(ACCOUNT)

## Benchmarks (not part of make test): see tests/bench/README.md
bench: $(STAMP)
	$(VENV)/bin/python -m tests.bench.run_all

clean:
	rm -rf var
