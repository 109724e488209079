VENV ?= .venv
PYTHON ?= python3
PYTEST_ARGS ?=
EXTRAS ?= test,dev,psycopg

BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help install demo test lint format bench clean docs

help:
	@echo "make install  create $(VENV) and install the package with the [$(EXTRAS)] extras"
	@echo "make demo     migrate, seed, sync the views and read them as the analytics role"
	@echo "make test     run the test suite under coverage (PYTEST_ARGS=... to pass options)"
	@echo "make test-matrix  the tests for Django 4.2/5.2/6.0/6.1 x psycopg2/psycopg 3 x PostgreSQL 15/18 (nox)"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make format   ruff format and ruff check --fix"
	@echo "make docs     build the documentation site into site/ (mkdocs build --strict)"
	@echo "make bench    run every benchmarks/bench_*.py"
	@echo "make clean    remove the virtualenv, caches and build output"
	@echo "DATABASE_URL=postgresql://... selects a server; unset, an embedded PostgreSQL 18 is started."

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(INSTALLED)

# Each of demo and test first says which PostgreSQL it uses (DATABASE_URL without its
# password, or the embedded server's version and data directory).
SERVER_LINE := $(BIN)/python -m test_project.embedded_postgres

demo: $(INSTALLED)
	@$(SERVER_LINE)
	$(BIN)/python manage.py demo

# pytest exits 5 when it collects no test; that is not a failure of the code under
# test, so it is reported and tolerated, while every other non-zero status fails.
# The report prints the total and exits 2 under [tool.coverage.report] fail_under,
# which fails the target.
test: $(INSTALLED)
	@$(SERVER_LINE)
	$(BIN)/python -m coverage erase
	@status=0; $(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: nothing to report"; exit 0; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	$(BIN)/python -m coverage combine --quiet && \
	$(BIN)/python -m coverage report

# The support matrix (noxfile.py): one nox session for each Django, driver and
# PostgreSQL (15: the machine's, 18: the embedded one), each Django on the Python it
# needs; virtualenvs are reused. NOX_ARGS passes options (NOX_ARGS=--list shows the
# sessions; NOX_ARGS="-k \"postgres='18'\"" runs those on one server).
.PHONY: test-matrix
test-matrix: $(INSTALLED)
	$(BIN)/nox $(NOX_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (mkdocs.yml, docs/): the [docs] extra is installed into the
# same virtualenv on first use; --strict turns every warning (a broken link, a
# docstring griffe cannot parse) into a failure. NO_MKDOCS_2_WARNING silences Material's
# notice about its successor, which is not a problem of this site.
DOCS_INSTALLED := $(VENV)/.docs-installed

$(DOCS_INSTALLED): $(INSTALLED) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(DOCS_INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Each script creates and drops a database of its own on DATABASE_URL's server (default
# postgresql://postgres@127.0.0.1:5432) and writes benchmarks/results/<script>.json,
# which update_readme.py quotes in benchmarks/README.md.
# BENCH_ARGS is passed to every script, e.g. BENCH_ARGS="--rows 100000 --repeat 1".
bench: $(INSTALLED)
	@set -e; found=0; \
	for script in benchmarks/bench_*.py; do \
		[ -e "$$script" ] || continue; \
		found=1; \
		echo "== $$script"; \
		$(BIN)/python "$$script" $(BENCH_ARGS); \
		echo; \
	done; \
	if [ $$found -eq 0 ]; then echo "no benchmarks/bench_*.py to run"; \
	else $(BIN)/python benchmarks/update_readme.py; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .coverage .coverage.* htmlcov \
		.mypy_cache .ruff_cache .pytest_cache .nox
	find . -path ./.pgdata -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
