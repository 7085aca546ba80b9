# wskit developer tasks (GNU make). Needs only Python 3.10+, and gcc for the
# optional C accelerator; everything else is installed into $(VENV).
#
#   make run                     install wskit alone and show the demo
#   make test                    add the dev tools; lint, type-check and run the whole test suite
#   make docs                    build the documentation site into site/ (strict: warnings fail)
#   make test PYTHON=python3.13  the same with another interpreter (new venv:
#                                run `make distclean` first if .venv exists)

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check
# Re-install when these change (the C file: editable installs build it in place).
INSTALL_DEPS := pyproject.toml setup.py wskit/_speedups.c
# Two installs, each with its stamp: wskit and its runtime dependencies only
# (`make run`), or that plus the development tools (`make venv`, `make test`).
# The development install includes the runtime one, so it stamps both.
RUN_STAMP := $(VENV)/.wskit-runtime-installed
STAMP := $(VENV)/.wskit-installed
DOCS_STAMP := $(VENV)/.wskit-docs-installed
RUN_LOG := $(VENV)/wskit-install.log
ACCELERATOR_REPORT := import wskit.mask as m; print('wskit C accelerator:', 'built' if m.USING_SPEEDUPS else 'NOT built (pure-Python fallback)')

.DEFAULT_GOAL := help
# `docs` is also the name of the folder of pages: without .PHONY, make would find it up to date.
.PHONY: help venv install run test docs docs-serve lint typecheck coverage pytest bench compliance compliance-setup compliance-ci compliance-reference clean distclean

help: ## Show this help.
	@echo "Usage: make TARGET [PYTHON=python3.x]"
	@echo
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sort | \
		awk -F':.*## ' '{ printf "  %-21s %s\n", $$1, $$2 }'

venv: $(STAMP) ## Create .venv and install wskit in editable mode with the dev tools.
install: $(STAMP) ## Same as venv.

$(STAMP): $(INSTALL_DEPS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar off --upgrade pip "setuptools>=68" wheel
	$(PIP) install --progress-bar off -e '.[dev,docs]'
	$(VPY) -c "$(ACCELERATOR_REPORT)"
	touch $(RUN_STAMP) $(DOCS_STAMP) $@

# Quiet: pip's output goes to $(RUN_LOG), shown (its end) only when the install fails.
$(RUN_STAMP): $(INSTALL_DEPS)
	@echo "Installing wskit and its runtime dependencies into $(VENV) (log: $(RUN_LOG))..."
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@{ $(PIP) install --progress-bar off --upgrade pip "setuptools>=68" wheel && \
	   $(PIP) install --progress-bar off -e . ; } > $(RUN_LOG) 2>&1 || \
	   { tail -n 30 $(RUN_LOG); echo "make run: the install failed; the whole log is in $(RUN_LOG)"; exit 1; }
	@$(VPY) -c "$(ACCELERATOR_REPORT)"
	@touch $@

run: $(RUN_STAMP) ## Install wskit (no dev tools) and run the demo: a server and a client talking.
	@$(VPY) -m wskit demo

test: $(STAMP) ## Lint (ruff), type-check (mypy), then the whole test suite, measured: branch coverage and its floors.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory coverage ARGS=

# The doc tools (the `docs` extra) on top of the runtime install, for `make docs` alone.
$(DOCS_STAMP): $(INSTALL_DEPS)
	@echo "Installing wskit and the documentation tools into $(VENV) (log: $(RUN_LOG))..."
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@{ $(PIP) install --progress-bar off --upgrade pip "setuptools>=68" wheel && \
	   $(PIP) install --progress-bar off -e '.[docs]' ; } > $(RUN_LOG) 2>&1 || \
	   { tail -n 30 $(RUN_LOG); echo "make docs: the install failed; the whole log is in $(RUN_LOG)"; exit 1; }
	@touch $@

docs: $(DOCS_STAMP) ## Build the documentation site into site/ (strict: a warning or a broken link fails; needs Graphviz's dot).
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean
	@echo "The site is in site/ (open site/index.html); make docs-serve serves it with live reload."

docs-serve: $(DOCS_STAMP) ## Serve the documentation on http://127.0.0.1:8000/ with live reload.
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict -a 127.0.0.1:8000

lint: $(STAMP) ## Only ruff.
	$(VENV)/bin/ruff check .

typecheck: $(STAMP) ## Only mypy.
	$(VENV)/bin/mypy

# Branch coverage of the whole suite, subprocesses included (see [tool.coverage.*] in
# pyproject.toml), then the floors: 100% for the sans-I/O core, 95% for every other module.
coverage: $(STAMP) ## Only the test suite, measured: branch coverage report and its floors (.ci/coverage_floors.py).
	rm -rf .coverage-data && mkdir -p .coverage-data
	$(VPY) -m coverage run -m pytest $(ARGS)
	$(VPY) -m coverage combine -q
	$(VPY) -m coverage report
	$(VPY) .ci/coverage_floors.py

pytest: $(STAMP) ## Only the test suite; pass options with ARGS="-k mask -x".
	$(VPY) -m pytest $(ARGS)

bench: $(STAMP) ## Benchmarks: sans-I/O core (bench/run.py; its frames again with freed memory kept) and loopback echo servers (bench/echo.py).
	$(PIP) install --progress-bar off -q -e '.[dev,bench]'
	$(VPY) bench/run.py
	$(VPY) bench/run.py --keep-freed-memory -k frames
	$(VPY) bench/echo.py

compliance-setup: ## Create the Python 2.7 env (.autobahn) with the Autobahn|Testsuite.
	bash tests/compliance/setup.sh

compliance: $(STAMP) ## Autobahn|Testsuite, all 517 cases, every testee (about 45 minutes). ARGS="--testee sansio_server --cases '1.*'"
	$(VPY) tests/compliance/run.py $(ARGS)

compliance-ci: $(STAMP) ## Autobahn|Testsuite, CI selection (groups 1-10 everywhere, 12.1/13.1 on the asyncio server).
	$(VPY) tests/compliance/run.py --ci $(ARGS)

compliance-reference: $(STAMP) ## The CI selection against python-websockets, to compare.
	$(VPY) tests/compliance/run.py --ci --testee 'websockets_*'

clean: ## Remove build outputs, caches and the in-place C extension (keeps .venv).
	rm -rf build dist site *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	rm -f wskit/_speedups*.so wskit/_speedups*.pyd
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv.
	rm -rf $(VENV)

# -- workers and the Redis hub under load --------------------------------------------
.PHONY: hub-load
hub-load: $(STAMP) ## Load test: 4 workers x 2,500 connections, a Redis hub; latency and losses. ARGS="--per-worker 500"
	$(VPY) bench/hub_load.py $(ARGS)

# -- fuzzing (tests/fuzz) ---------------------------------------------------------
# The default test run fuzzes each target for a bounded number of examples
# (a few seconds in all); `make fuzz` runs the same hypothesis targets with
# FUZZ_EXAMPLES examples each, then, where atheris installs (the `fuzz`
# extra), each coverage-guided target for FUZZ_SECONDS. Crashes land in build/fuzz/.
FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := request response server-handshake client-handshake frames-server frames-client frames-gathered deflate config

.PHONY: fuzz
fuzz: $(STAMP) ## Fuzz the parsers longer (FUZZ_EXAMPLES=20000 hypothesis examples, FUZZ_SECONDS=60 of atheris per target).
	WSKIT_FUZZ=long WSKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest -q -p no:randomly tests/fuzz $(ARGS)
	@if $(PIP) install --progress-bar off -q -e '.[fuzz]' && $(VPY) -c "import atheris" 2>/dev/null; then \
		mkdir -p build/fuzz; \
		for target in $(FUZZ_TARGETS); do \
			echo "atheris: $$target for $(FUZZ_SECONDS) s"; \
			$(VPY) tests/fuzz/fuzz_atheris.py $$target -max_total_time=$(FUZZ_SECONDS) \
				-artifact_prefix=build/fuzz/ -print_final_stats=0 || exit 1; \
		done; \
	else echo "atheris is not available here: hypothesis targets only"; fi

# -- scale and soak (not part of `make test`; tests/test_soak.py runs it with tiny counts) --
.PHONY: soak
soak: $(STAMP) ## Soak: 10,000 idle + 1,000 x 100 echoes (asyncio), 2,000 + 500 x 100 (sync); nothing lost or leaked. ARGS="--idle 5000"
	$(VPY) bench/soak.py $(ARGS)
