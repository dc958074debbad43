"""What simulated devices produced and what the database stored, by device address, as
counters of record identities: the two sides of "every record stored exactly once".

A record is compared by what it is, not by how it travelled (`record_identity`: its
bytes without the transport bits, as its idempotency key is made): a dispenser event
logged as produced live and received by the hub from the device's log carries the
"sent from storage" flag, and is the same record."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import psycopg

from device_drivers.codecs.registry import record_identity


def identity(characteristic: str | None, raw_hex: str) -> str:
    """The record's identity (hex): its bytes without transport bits. The bytes as they
    are when the characteristic is not known (a reading recovered from a device's memory
    after a kill): they are as produced, with no transport bit set, so their own identity."""
    if characteristic is None:
        return raw_hex
    return record_identity(characteristic, bytes.fromhex(raw_hex)).hex()


def produced(data_dir: Path) -> dict[str, Counter[str]]:
    """address -> identities of the records each simulated device produced (and holds)."""
    out: dict[str, Counter[str]] = {}
    path = data_dir / "simulated-readings.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            key = identity(record.get("characteristic"), record["raw_hex"])
            out.setdefault(record["address"], Counter())[key] += 1
    return out


def stored(database_url: str) -> dict[str, Counter[str]]:
    """address -> identities of the readings stored in the database."""
    out: dict[str, Counter[str]] = {}
    with psycopg.connect(database_url) as conn:
        for address, characteristic, raw in conn.execute(
            "SELECT d.address, r.characteristic, encode(r.raw, 'hex') FROM readings r"
            " JOIN devices d ON d.id = r.device_id"
        ):
            out.setdefault(address, Counter())[identity(characteristic, raw)] += 1
    return out
