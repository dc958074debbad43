"""End-to-end receipts: what ingest tells a hub after the commit that stored its readings.

One `Receipt` per hub per committed batch (split at `MAX_KEYS_PER_RECEIPT`), naming each
key: stored, duplicate (stored before), or rejected with a short reason code. A dead
letter whose keys can still be read (valid JSON, a readings topic) is receipted as
rejected, so that the hub stops resending it and keeps it for inspection. Pure: the
worker publishes what this returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from hemhub.contract import (
    MAX_KEYS_PER_RECEIPT,
    ReadingBatch,
    Receipt,
    RejectedKey,
    TopicError,
    parse_topic,
    topic_receipts,
)
from ingest.messages import Parsed, rejection_code
from ingest.pipeline import DeadLetter

_KEY_CHARS = frozenset("0123456789abcdef")


@dataclass
class _Outcomes:
    stored: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    rejected: list[RejectedKey] = field(default_factory=list)


def _key(value: object) -> str | None:
    """The value if it is an idempotency key (64 lowercase hex digits), else None."""
    if isinstance(value, str) and len(value) == 64 and _KEY_CHARS.issuperset(value):
        return value
    return None


def readable_keys(payload: bytes) -> list[str]:
    """The idempotency keys a rejected readings payload still shows (valid JSON with a
    list of readings), in order and once each; [] when none can be read."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return []
    readings = data.get("readings") if isinstance(data, dict) else None
    if not isinstance(readings, list):
        return []
    keys = (_key(r.get("idempotency_key")) for r in readings if isinstance(r, dict))
    return list(dict.fromkeys(k for k in keys if k is not None))


def receipts_for(
    parsed: list[Parsed], stored_keys: set[str], at: datetime
) -> list[tuple[str, bytes]]:
    """The (topic, payload) receipts for committed messages: `stored_keys` are the keys
    the commit inserted; every other key of a stored batch was a duplicate."""
    by_hub: dict[str, _Outcomes] = {}
    for p in parsed:
        if isinstance(p, ReadingBatch):
            out = by_hub.setdefault(p.hub_id, _Outcomes())
            for r in p.readings:
                key = r.idempotency_key
                (out.stored if key in stored_keys else out.duplicate).append(key)
        elif isinstance(p, DeadLetter):
            try:
                hub_id, kind = parse_topic(p.topic)
            except TopicError:
                continue  # no hub to tell
            if kind != "readings":
                continue
            keys = readable_keys(p.payload)
            if keys:
                code = rejection_code(p.reason)
                out = by_hub.setdefault(hub_id, _Outcomes())
                out.rejected.extend(RejectedKey(idempotency_key=k, reason=code) for k in keys)
    messages: list[tuple[str, bytes]] = []
    n = MAX_KEYS_PER_RECEIPT
    for hub_id, out in by_hub.items():
        total = len(out.stored) + len(out.duplicate) + len(out.rejected)
        for i in range(0, total, n):
            # One slice of the three lists concatenated, kept apart by outcome.
            lo, hi = i, i + n
            a, b = len(out.stored), len(out.stored) + len(out.duplicate)
            receipt = Receipt.model_construct(
                schema_version=2,
                hub_id=hub_id,
                at=at,
                stored=out.stored[max(lo, 0) : min(hi, a)],
                duplicate=out.duplicate[max(lo - a, 0) : max(min(hi, b) - a, 0)],
                rejected=out.rejected[max(lo - b, 0) : max(hi - b, 0)],
            )
            messages.append((topic_receipts(hub_id), receipt.model_dump_json().encode()))
    return messages
