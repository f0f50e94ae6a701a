# The two commands of the README.  Both set up .venv themselves on a fresh machine.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	$(VENV)/bin/tailor compile-kernels
	touch $@

.PHONY: demo test lint bench
demo: $(VENV)/.installed  ## produce → ingest → build → verify, on services it starts itself
	$(VENV)/bin/tailor demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tailor ingest compute tests benchmarks
	$(VENV)/bin/mypy

test: lint  ## ruff, mypy --strict, then the whole pytest suite
	$(VENV)/bin/python -m pytest

$(VENV)/.bench: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench  ## the issue-5 harness (adds PySpark; Java needed for its peer)
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)
