"""Tailor's benchmark harness (issue 5): ``python -m benchmarks --help``.

Times ``tailor build`` and ``tailor ingest`` against their peers in one run
(DuckDB, Polars, PySpark's collect_list/sort_array design, a bare aiokafka
fetch loop), checks every output against the synth oracle before any time
counts, and writes ``benchmarks/RESULTS.md``.
"""
