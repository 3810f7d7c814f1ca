# bitHuman Portal. `make run` to try it, `make test` to test it. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
REQUIREMENTS := requirements/base.txt requirements/dev.txt requirements/prod.txt

.PHONY: help install run test test-faults lint audit fmt migrations-check docker-check ci demo-password clean bench

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(PY):
	@python=$$(scripts/find-python.sh) && echo "Using $$python" && "$$python" -m venv $(VENV)

$(DEPS_STAMP): $(PY) $(REQUIREMENTS)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt -r requirements/prod.txt
	@touch $@

install: $(DEPS_STAMP) ## Create .venv with Python 3.12+ and install the pinned requirements

run: install ## Set up and start the portal (web + Celery worker with beat) on embedded defaults
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(PY) manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(PY) manage.py demo_setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(VENV)/bin/honcho start -f Procfile

demo-password: install ## Give the demo owner a new password and print it
	$(PY) manage.py demo_setup --reset-password

test: install ## Run the whole test suite (PostgreSQL, Redis and Chromium when available)
	@PY=$(PY) scripts/test.sh $(ARGS)

test-faults: install ## Fault-injection suite: real workers killed, throttled, rotated (PostgreSQL + Redis required)
	@CI=true REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/8} PORTAL_BROWSER=$${PORTAL_BROWSER:-unused} \
		PY=$(PY) scripts/test.sh tests/faults $(ARGS)

lint: install ## ruff check, ruff format --check, mypy, dependency audit (skipped when offline)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_DEBUG=true $(VENV)/bin/mypy .
	$(PY) scripts/audit.py

audit: install ## pip-audit of the installed pins; fails when the advisory service is unreachable
	AUDIT_STRICT=true $(PY) scripts/audit.py

fmt: install ## Format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

docker-check: install ## Validate docker/compose.yaml (compose spec, offline) and lint docker/Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml
	$(VENV)/bin/hadolint --failure-threshold info docker/Dockerfile

migrations-check: install ## Fail if models changed without a migration
	DJANGO_DEBUG=true $(PY) manage.py makemigrations --check --dry-run

ci: test test-faults lint migrations-check ## What .ci/run runs

bench: install ## Benchmarks on the real stack (PostgreSQL, Redis, Celery, gunicorn, sandbox); writes bench/results.md
	@command -v wrk >/dev/null || apt-get install -y wrk >/dev/null || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	$(PY) -m bench.run $(ARGS)

clean: ## Remove the virtualenv and local state (database, broker files, media)
	rm -rf $(VENV) var
