# The two commands of the README.  Both set up .venv themselves on a fresh machine.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	$(VENV)/bin/tailor compile-kernels
	touch $@

.PHONY: demo test test-fast lint bench
demo: $(VENV)/.installed  ## produce → ingest → build → verify, on services it starts itself
	$(VENV)/bin/tailor demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tailor ingest compute ops tests benchmarks
	$(VENV)/bin/mypy

# Two pytest workers: most tests wait on a broker, a store or a flush age, not on
# the CPU; each worker starts its own broker and S3 server on free loopback ports.
test: lint  ## ruff, mypy --strict, then the whole pytest suite
	$(VENV)/bin/python -m pytest -n 2

# The edit loop: every test that starts no service (broker, S3 server, Dask cluster,
# tailor subprocess; the `services` marker, tests/conftest.py), under a minute.
test-fast: $(VENV)/.installed  ## the tests that start no service (pytest -m "not services")
	$(VENV)/bin/python -m pytest -m "not services" -q

$(VENV)/.bench: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench  ## the benchmarks (adds chDB, DataFusion, PySpark; Java for PySpark); BENCH_ARGS='--scale10' for the full run
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)
