"""What simulated devices produced and what the database stored, by device address, as
counters of raw bytes (hex): the two sides of "every record stored exactly once"."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import psycopg


def produced(data_dir: Path) -> dict[str, Counter[str]]:
    """address -> raw bytes (hex) of what each simulated device produced (and holds)."""
    out: dict[str, Counter[str]] = {}
    path = data_dir / "simulated-readings.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            out.setdefault(record["address"], Counter())[record["raw_hex"]] += 1
    return out


def stored(database_url: str) -> dict[str, Counter[str]]:
    """address -> raw bytes (hex) of the readings stored in the database."""
    out: dict[str, Counter[str]] = {}
    with psycopg.connect(database_url) as conn:
        for address, raw in conn.execute(
            "SELECT d.address, encode(r.raw, 'hex') FROM readings r"
            " JOIN devices d ON d.id = r.device_id"
        ):
            out.setdefault(address, Counter())[raw] += 1
    return out
