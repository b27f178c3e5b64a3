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

shim: ## rebuild the native shim and isorun-launch in place (removes stale copies of the module)
	$(PY) src/isorun/shim/build_shim.py
	@# the isorun command is a copy of isorun-launch (setup.py installs it); keep it current
	@if [ -f $(VENV)/bin/isorun ]; then install -m 755 src/isorun/isorun-launch $(VENV)/bin/isorun; fi

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

# The shim built with ASan + UBSan into build/asan (the package's module stays as it is),
# loaded through scripts/asan/sitecustomize.py, against the tests that run it for real.
# - LD_PRELOAD: the ASan runtime must be the first library of the process; python is not
#   linked with it, so without the preload dlopen()ing the module fails at once.
# - detect_leaks=0: LeakSanitizer would report every object the interpreter keeps until
#   exit, thousands of reports that are not ours; the shim allocates nothing itself.
# - abort_on_error=1: a report ends the process with SIGABRT, which no test mistakes for
#   a command's own exit status.
# - detect_stack_use_after_return=0 (GCC's default, made explicit): with it, frames live
#   on a heap "fake stack" that init and the CLONE_VM command would share.
# The child's stacks need telling ASan about; scripts/asan/clone_stack.c says why.
ASAN_ENV = PYTHONPATH=$(CURDIR)/scripts/asan \
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

test-asan: setup ## integration, escape and learn tests on an ASan/UBSan build of the shim
	ISORUN_SHIM_BUILD=asan $(PY) src/isorun/shim/build_shim.py
	$(ASAN_ENV) $(PY) -c 'from isorun.sandbox import _shim; import isorun._shim_c as m; \
		assert "/build/asan/" in m.__file__, m.__file__; print("test-asan:", m.__file__)'
	$(ASAN_ENV) $(PYTEST) -q -p no:cacheprovider tests/integration tests/escape tests/learn

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

bench-marker: setup ## only the marker's per-test cost, fork vs sandbox (its section of docs/benchmarks.md)
	$(PY) scripts/bench.py --only marker

check: test ## everything CI checks (make test includes lint and typecheck)

clean: ## remove build outputs and caches
	rm -rf build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache tests/probes/bin
	find . -name __pycache__ -prune -exec rm -rf {} +

.PHONY: help setup dev shim run test test-unit test-golden golden test-integration test-escape test-root test-asan lint fmt typecheck docs bench bench-marker check clean
