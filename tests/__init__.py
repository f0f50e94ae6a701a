"""Tailor's tests, one package per package they test (docs/architecture.md, "Module map")."""
