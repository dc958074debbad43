"""Benchmarks of the ingest tier (`make bench`, `python -m bench`); see bench/README.md."""
