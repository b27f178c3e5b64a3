# isorun developer commands. `make help` lists them. `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: ## install system packages (as root) and the .venv with isorun in it
	@scripts/setup.sh

dev: setup ## alias of setup

shim: ## rebuild the native shim in place
	$(VENV)/bin/pip install -q -e . --no-deps

run: setup ## run a sandboxed demo with the built-in strict profile
	@scripts/demo.sh

test: setup ## lint, type check and the whole suite (unit, golden, integration, escape), as CI runs it
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy src
	$(PYTEST) -q tests

test-unit: setup ## unit tests only
	$(PYTEST) -q tests/unit

test-golden: setup ## golden plan/error tests
	$(PYTEST) -q tests/golden

golden: setup ## regenerate the golden files (review the diff!)
	$(PY) scripts/golden.py

test-integration: setup ## real sandboxes
	$(PYTEST) -q tests/integration

test-escape: setup ## the escape suite
	$(PYTEST) -q tests/escape

test-root: setup ## root-only tests
	$(PYTEST) -q -m root tests

lint: setup ## ruff
	$(VENV)/bin/ruff check src tests scripts

fmt: setup ## ruff format
	$(VENV)/bin/ruff format src tests scripts

typecheck: setup ## mypy --strict on src
	$(VENV)/bin/mypy src

docs: setup ## regenerate docs/profile.md from the schema docstrings
	$(PY) scripts/gen_profile_doc.py > docs/profile.md

bench: setup ## benchmarks against bubblewrap/firejail (writes docs/benchmarks.md)
	$(PY) scripts/bench.py

check: test ## everything CI checks (make test includes lint and typecheck)

clean: ## remove build outputs and caches
	rm -rf build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache tests/probes/bin
	find . -name __pycache__ -prune -exec rm -rf {} +

.PHONY: help setup dev shim run test test-unit test-golden golden test-integration test-escape test-root lint fmt typecheck docs bench check clean
