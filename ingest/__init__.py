"""hemhub: ingest."""
