"""`python -m bench`: run the ingest benchmark and write bench-results.json."""

from bench.ingest import main

if __name__ == "__main__":
    raise SystemExit(main())
