"""The structured log lines of ingest: `event key=value ...` (logfmt-like)."""

from __future__ import annotations


def kv(event: str, **fields: object) -> str:
    """A structured log line: `event key=value ...` (logfmt-like, grep- and parse-able)."""
    parts = [event]
    for k, v in fields.items():
        text = str(v)
        parts.append(f"{k}={text!r}" if (" " in text or not text) else f"{k}={text}")
    return " ".join(parts)
