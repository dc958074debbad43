"""Set-based storage of validated messages: one transaction per batch of messages.

`store()` writes everything a batch of MQTT messages amounts to in one commit:
readings (deduplicated, attributed, with provenance), the alerts they raise, dead
letters and hub status. The worker acknowledges the messages only after that commit,
so a crash anywhere before it means redelivery, never loss; redelivery is harmless
because `reading_keys` drops what was already stored.

The readings path is:
1. binary COPY of the batch into a temporary staging table, one row per idempotency
   key (the first copy of a key in the batch; the fast path: one round trip, no
   per-row statements);
2. upsert hubs (by id) and devices (by DeviceIdentity.stable_id; a device seen again
   within `DEVICE_SEEN_RESOLUTION`, unchanged, is left as it is);
3. one statement: insert the keys into `reading_keys` ON CONFLICT DO NOTHING
   RETURNING the new ones (the dedupe authority: a key already stored is dropped even
   if its measured_at differs), join them back to the staging rows, check that the
   sending hub was entitled to the device at its measured_at (registered, of the
   device's principal, the device on its allow-list then), attribute each entitled
   reading by its measured_at to the assignment period active then, quarantine the
   others with the reason, and insert into `readings`;
4. quarantined readings: one security event per hub, device and reason (the worker logs
   one line per batch);
5. evaluate the alert rules on the new attributed readings (ingest.engine);
6. remember which hub last reported each device (readings and status device lists of
   entitled hubs), for the reason of missing data when a hub goes silent;
7. hub statuses: each hub's and device's health and its history (ingest.health).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from pydantic import TypeAdapter

from hemhub.contract import (
    CommandResult,
    DeviceProfile,
    HubStatus,
    MeasurementType,
    Quantity,
    Reading,
    ReadingBatch,
    topic_results,
)
from ingest import alerts, commands, engine, health
from ingest.logfmt import kv

Conn = psycopg.Connection[Any]


#: A reading that reached the hub, or the ingest tier, more than this after it was
#: measured is `late` (a device's or a hub's backlog replayed after an outage): stored
#: and evaluated, but flagged.
LATE_AFTER = timedelta(hours=1)

_VALUES_JSON: TypeAdapter[list[Quantity]] = TypeAdapter(list[Quantity])

_STAGE = "_hemhub_stage"

# ON COMMIT DELETE ROWS: created once per connection, emptied by every commit, so no
# catalog churn per batch (ON COMMIT DROP would create and drop a table each time).
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    idempotency_key  text NOT NULL,
    hub_id           text NOT NULL,
    stable_id        text NOT NULL,
    address          text NOT NULL,
    manufacturer     text,
    model            text,
    serial           text,
    firmware         text,
    measurement_type text NOT NULL,
    characteristic   text NOT NULL,
    values_json      text NOT NULL,
    status           text[] NOT NULL,
    device_time      timestamp,
    hub_received_at  timestamptz NOT NULL,
    measured_at      timestamptz NOT NULL,
    clock_source     text NOT NULL,
    clock_offset_s   double precision NOT NULL,
    hub_clock_synced boolean NOT NULL,
    raw              bytea NOT NULL,
    device_sequence  bigint,
    event_json       text
) ON COMMIT DELETE ROWS
"""

_STAGE_COLUMNS = (
    "idempotency_key",
    "hub_id",
    "stable_id",
    "address",
    "manufacturer",
    "model",
    "serial",
    "firmware",
    "measurement_type",
    "characteristic",
    "values_json",
    "status",
    "device_time",
    "hub_received_at",
    "measured_at",
    "clock_source",
    "clock_offset_s",
    "hub_clock_synced",
    "raw",
    "device_sequence",
    "event_json",
)
_STAGE_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text[]",
    "timestamp",
    "timestamptz",
    "timestamptz",
    "text",
    "float8",
    "bool",
    "bytea",
    "int8",
    "text",
)

_UPSERT_HUBS = """
INSERT INTO hubs (id)
SELECT DISTINCT hub_id FROM _hemhub_stage ORDER BY 1
ON CONFLICT (id) DO NOTHING
"""

#: How fresh `devices.last_seen_at` is kept: a device seen again within this of its
#: recorded sighting, with the same address and firmware, is not rewritten (at scale
#: nearly every batch sees every active device again; rewriting each row cost as much
#: as storing the readings).
DEVICE_SEEN_RESOLUTION = timedelta(minutes=1)

# The newest sighting of each device wins (an old backlog does not roll firmware back).
# Only new devices and those whose row would change are written; ORDER BY stable_id
# fixes the lock order between concurrent workers. The pre-filter reads a snapshot; the
# ON CONFLICT clause decides against the row as it is at the time of writing.
_UPSERT_DEVICES = """
INSERT INTO devices AS d
    (stable_id, address, manufacturer, model, serial, firmware, first_seen_at, last_seen_at)
SELECT s.stable_id, s.address, s.manufacturer, s.model, s.serial, s.firmware,
       s.first_seen, s.last_seen
FROM (
    SELECT DISTINCT ON (stable_id)
        stable_id, address, manufacturer, model, serial, firmware,
        min(hub_received_at) OVER (PARTITION BY stable_id) AS first_seen,
        hub_received_at AS last_seen
    FROM _hemhub_stage
    ORDER BY stable_id, hub_received_at DESC
) s
LEFT JOIN devices cur ON cur.stable_id = s.stable_id
WHERE cur.id IS NULL
   OR (s.last_seen > cur.last_seen_at
       AND (s.last_seen >= cur.last_seen_at + %(resolution)s
            OR s.address <> cur.address
            OR coalesce(s.firmware, cur.firmware) IS DISTINCT FROM cur.firmware))
ORDER BY s.stable_id
ON CONFLICT (stable_id) DO UPDATE SET
    address = EXCLUDED.address,
    firmware = coalesce(EXCLUDED.firmware, d.firmware),
    last_seen_at = EXCLUDED.last_seen_at
WHERE EXCLUDED.last_seen_at > d.last_seen_at
"""

#: Why a reading of a hub is not attributed (readings.quarantine), checked in this order.
QUARANTINE_REASONS = ("unknown_hub", "other_principal", "hub_not_entitled")

# The stage holds one row per key (`stage` keeps the first copy of a key). A reading is
# attributed only when its hub was entitled to the device at measured_at: the hub is
# registered (hubs.tenant_id), of the principal of the device's resident then (else of
# its fleet owner, when it has one), and the device was on the hub's allow-list then.
# Any other reading is quarantined: no patient, no tenant, the reason in `quarantine`.
_INSERT_READINGS = """
WITH new_keys AS (
    INSERT INTO reading_keys (idempotency_key, measured_at)
    SELECT idempotency_key, measured_at FROM _hemhub_stage
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key
)
INSERT INTO readings
    (measured_at, idempotency_key, hub_id, device_id, patient_id, tenant_id,
     measurement_type, characteristic, "values", status, device_time, hub_received_at,
     clock_source, clock_offset_s, hub_clock_synced, late, raw, device_sequence, event,
     quarantine)
SELECT
    f.measured_at, f.idempotency_key, f.hub_id, d.id,
    CASE WHEN q.reason IS NULL THEN a.patient_id END,
    CASE WHEN q.reason IS NULL THEN a.tenant_id END,
    f.measurement_type, f.characteristic, f.values_json::jsonb, f.status, f.device_time,
    f.hub_received_at, f.clock_source, f.clock_offset_s, f.hub_clock_synced,
    greatest(f.hub_received_at, %(arrived_at)s) - f.measured_at > %(late_after)s, f.raw,
    f.device_sequence, f.event_json::jsonb, q.reason
FROM _hemhub_stage f
JOIN devices d ON d.stable_id = f.stable_id
JOIN hubs h ON h.id = f.hub_id
-- attribution by measurement time, never by the device's current owner
LEFT JOIN LATERAL (
    SELECT da.patient_id, da.tenant_id
    FROM device_assignments da
    WHERE da.device_id = d.id
      AND da.started_at <= f.measured_at
      AND (da.ended_at IS NULL OR f.measured_at < da.ended_at)
    ORDER BY da.started_at DESC
    LIMIT 1
) a ON true
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN h.tenant_id IS NULL THEN 'unknown_hub'
        WHEN coalesce(a.tenant_id, d.owner_tenant_id) <> h.tenant_id THEN 'other_principal'
        WHEN NOT EXISTS (
            SELECT 1 FROM hub_devices hd
            WHERE hd.device_id = d.id AND hd.hub_id = f.hub_id
              AND hd.started_at <= f.measured_at
              AND (hd.ended_at IS NULL OR f.measured_at < hd.ended_at)
        ) THEN 'hub_not_entitled'
    END AS reason
) q
-- a semi-join (hashed): joining the new keys back sorted both sides, a fifth of the cost
WHERE f.idempotency_key IN (SELECT idempotency_key FROM new_keys)
RETURNING idempotency_key, patient_id, tenant_id, late, quarantine, hub_id, device_id,
          measured_at
"""

# One row per hub, device and reason of a batch's quarantined readings. The device's
# principal is its resident's at the first such reading, else its fleet owner's.
_INSERT_SECURITY_EVENTS = """
INSERT INTO security_events
    (kind, reason, hub_id, hub_tenant_id, device_id, device_tenant_id, readings,
     first_measured_at, last_measured_at, detail)
SELECT 'reading_quarantined', q.reason, q.hub_id, h.tenant_id, q.device_id, dt.tenant_id,
       q.n, q.first_at, q.last_at,
       format('hub %%s (principal %%s) wrote %%s reading(s) of device %%s (principal %%s)'
              ' measured %%s to %%s: %%s',
              q.hub_id, coalesce(h.tenant_id, 'none: not registered'), q.n, d.stable_id,
              coalesce(dt.tenant_id, 'unknown'), q.first_at, q.last_at, q.reason)
FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::int[], %s::timestamptz[],
            %s::timestamptz[]) AS q (hub_id, device_id, reason, n, first_at, last_at)
JOIN devices d ON d.id = q.device_id
LEFT JOIN hubs h ON h.id = q.hub_id
LEFT JOIN LATERAL (
    SELECT coalesce((
        SELECT da.tenant_id FROM device_assignments da
        WHERE da.device_id = q.device_id AND da.started_at <= q.first_at
          AND (da.ended_at IS NULL OR q.first_at < da.ended_at)
        ORDER BY da.started_at DESC LIMIT 1), d.owner_tenant_id) AS tenant_id
) dt ON true
RETURNING detail
"""

#: Which device profile a hub runs for a measurement type (device_last_hub.profile).
PROFILE_OF = {
    MeasurementType.BLOOD_PRESSURE: DeviceProfile.BLOOD_PRESSURE,
    MeasurementType.BODY_WEIGHT: DeviceProfile.WEIGHT_SCALE,
    MeasurementType.PULSE_OXIMETRY: DeviceProfile.PULSE_OXIMETER,
    MeasurementType.GLUCOSE: DeviceProfile.GLUCOSE,
    MeasurementType.MEDICATION_EVENT: DeviceProfile.DISPENSER,
}

# The newest report of each device wins, and only from a hub entitled to it then (a hub
# cannot make itself the reason for another's device). Only rows that would change are
# written (a hub reports its devices every minute): another hub, or newer by
# DEVICE_SEEN_RESOLUTION. ORDER BY address fixes the lock order between workers.
_REMEMBER_LAST_HUB = """
INSERT INTO device_last_hub AS l (address, hub_id, profile, reported_at)
SELECT x.address, x.hub_id, x.profile, x.at
FROM (
    SELECT DISTINCT ON (upper(address)) upper(address) AS address, hub_id, profile, at
    FROM unnest(%(hubs)s::text[], %(addresses)s::text[], %(profiles)s::text[],
                %(ats)s::timestamptz[]) AS u (hub_id, address, profile, at)
    ORDER BY upper(address), at DESC
) x
LEFT JOIN device_last_hub cur ON cur.address = x.address
WHERE (cur.address IS NULL
       OR (x.at > cur.reported_at
           AND (x.hub_id <> cur.hub_id OR x.at >= cur.reported_at + %(resolution)s)))
  AND EXISTS (
      SELECT 1 FROM hub_devices hd JOIN devices d ON d.id = hd.device_id
      WHERE hd.hub_id = x.hub_id AND upper(d.address) = x.address
        AND hd.started_at <= x.at AND (hd.ended_at IS NULL OR x.at < hd.ended_at))
ORDER BY x.address
ON CONFLICT (address) DO UPDATE SET
    hub_id = EXCLUDED.hub_id, profile = EXCLUDED.profile, reported_at = EXCLUDED.reported_at
WHERE EXCLUDED.reported_at > l.reported_at
"""

# One row per message (topic and payload): a redelivery or a resend counts a delivery.
# The first reason stays; the batch's own repeats are collapsed before the upsert.
_INSERT_DEAD_LETTERS = """
INSERT INTO dead_letters AS d (topic, reason, payload, digest, deliveries)
SELECT DISTINCT ON (digest) topic, reason, payload, digest,
       count(*) OVER (PARTITION BY digest)
FROM (
    SELECT *, sha256(convert_to(topic, 'UTF8') || '\\x00'::bytea || payload) AS digest
    FROM unnest(%s::text[], %s::text[], %s::bytea[]) WITH ORDINALITY
        AS l (topic, reason, payload, n)
) l
ORDER BY digest, n
ON CONFLICT (digest) DO UPDATE SET
    deliveries = d.deliveries + EXCLUDED.deliveries,
    last_received_at = now()
"""


@dataclass(frozen=True)
class DeadLetter:
    """A message that cannot be stored, kept whole with the reason (for replay/triage)."""

    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True)
class StatusUpdate:
    status: HubStatus
    #: When the ingest tier received it (hub clocks are not trusted for ordering).
    received_at: datetime


@dataclass
class StoreResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    #: Stored with no resident: no assignment covered the measurement time (the hub was
    #: entitled). Quarantined readings are counted apart.
    unattributed: int = 0
    #: Stored, but not attributed: the hub was not entitled to the device (see
    #: `QUARANTINE_REASONS`). Stored for the hub too: it must not send them again.
    quarantined: int = 0
    late: int = 0
    alerts_opened: int = 0
    alerts_updated: int = 0
    dead_letters: int = 0
    statuses: int = 0
    #: Hubs' results of commands recorded, and results already recorded before.
    results: int = 0
    duplicate_results: int = 0
    #: Alert ids touched, with "opened" / "updated".
    alerts: list[tuple[UUID, str]] = field(default_factory=list)
    #: The keys this commit inserted (the rest of the batches' keys were duplicates):
    #: what the hub's receipt says of each (ingest/receipts.py).
    stored_keys: set[str] = field(default_factory=set)
    #: The reason of each quarantined reading, by idempotency key.
    quarantine_reasons: dict[str, str] = field(default_factory=dict)
    #: The `detail` of each security event this commit raised (one per hub, device and
    #: reason of the quarantined readings).
    security_events: list[str] = field(default_factory=list)

    def add(self, other: StoreResult) -> None:
        for name in (
            "received",
            "stored",
            "duplicates",
            "unattributed",
            "quarantined",
            "late",
            "alerts_opened",
            "alerts_updated",
            "dead_letters",
            "statuses",
            "results",
            "duplicate_results",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.alerts.extend(other.alerts)
        self.stored_keys |= other.stored_keys
        self.quarantine_reasons.update(other.quarantine_reasons)
        self.security_events.extend(other.security_events)


def quarantine_summary(result: StoreResult) -> str:
    """The one warning line of a batch with quarantined readings: how many, why, how many
    security events, and the first of them (the rest are in `security_events`)."""
    reasons = Counter(result.quarantine_reasons.values())
    return kv(
        "ingest.quarantined",
        readings=result.quarantined,
        reasons=",".join(f"{r}={n}" for r, n in sorted(reasons.items())),
        security_events=len(result.security_events),
        first=result.security_events[0] if result.security_events else "",
    )


def _nul_free(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a reason quoting a hostile payload might.
    return text.replace("\x00", "\\0")


@dataclass(frozen=True)
class Staged:
    """Reading batches turned into staging rows, ready for `store`: pure Python, no
    database, so the worker builds them while the previous batch is being stored."""

    #: One row per idempotency key, in `_STAGE_COLUMNS` order: the first copy of a key
    #: wins (a message redelivered within one batch).
    rows: list[tuple[Any, ...]]
    #: The reading of each staged row.
    by_key: dict[str, Reading]
    #: Readings in the batches, duplicates included.
    received: int


def stage(batches: Sequence[ReadingBatch]) -> Staged:
    """The staging rows of the batches' readings (see `Staged`)."""
    rows: list[tuple[Any, ...]] = []
    by_key: dict[str, Reading] = {}
    for batch in batches:
        for r in batch.readings:
            key = r.idempotency_key
            if key in by_key:
                continue
            by_key[key] = r
            dev = r.device
            rows.append(
                (
                    key,
                    batch.hub_id,
                    dev.stable_id,
                    dev.address,
                    dev.manufacturer,
                    dev.model,
                    dev.serial,
                    dev.firmware,
                    str(r.measurement_type),
                    r.characteristic,
                    _VALUES_JSON.dump_json(r.values).decode(),
                    list(r.status),
                    r.device_time,
                    r.hub_received_at,
                    r.measured_at,
                    str(r.clock.source),
                    r.clock.offset_s,
                    r.clock.hub_clock_synced,
                    bytes.fromhex(r.raw_hex),
                    r.device_sequence,
                    r.event.model_dump_json() if r.event is not None else None,
                )
            )
    return Staged(rows, by_key, sum(len(b.readings) for b in batches))


@dataclass(frozen=True)
class _DeviceReport:
    """A hub reported a device (a reading of it, or its status' device list)."""

    hub_id: str
    address: str
    profile: DeviceProfile
    at: datetime


def _remember_last_hubs(conn: Conn, all_reports: Sequence[_DeviceReport]) -> None:
    newest: dict[str, _DeviceReport] = {}
    for r in all_reports:
        key = r.address.upper()
        if key not in newest or r.at > newest[key].at:
            newest[key] = r
    if not newest:
        return
    reports = list(newest.values())
    conn.execute(
        _REMEMBER_LAST_HUB,
        {
            "hubs": [r.hub_id for r in reports],
            "addresses": [r.address for r in reports],
            "profiles": [str(r.profile) for r in reports],
            "ats": [r.at for r in reports],
            "resolution": DEVICE_SEEN_RESOLUTION,
        },
    )


def _store_readings(
    conn: Conn,
    staged: Staged,
    rules: Sequence[alerts.Rule],
    arrived_at: datetime | None,
) -> tuple[StoreResult, list[_DeviceReport]]:
    result = StoreResult()
    rows, by_key = staged.rows, staged.by_key
    result.received = staged.received
    if not rows:
        return result, []
    # The stage has no statistics, so a batch's plans can look costly enough for JIT,
    # whose compiling cost more than the statements (PostgreSQL 15: ~19 ms a batch).
    # One round trip for both (no parameters: the simple protocol takes two statements).
    conn.execute(_CREATE_STAGE + "; SET LOCAL jit = off")
    with conn.cursor() as cur:
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(_STAGE), sql.SQL(", ").join(map(sql.Identifier, _STAGE_COLUMNS))
        )
        with cur.copy(copy_sql) as copy:
            copy.set_types(list(_STAGE_TYPES))
            for row in rows:
                copy.write_row(row)
        # One round trip for the three: each one costs a wait for the GIL as well, in a
        # worker whose other threads parse meanwhile.
        with conn.pipeline():
            conn.execute(_UPSERT_HUBS)
            conn.execute(_UPSERT_DEVICES, {"resolution": DEVICE_SEEN_RESOLUTION})
            cur.execute(_INSERT_READINGS, {"late_after": LATE_AFTER, "arrived_at": arrived_at})
        new = cur.fetchall()
    result.stored = len(new)
    result.stored_keys = {row[0] for row in new}
    result.duplicates = result.received - result.stored
    candidates: list[alerts.Candidate] = []
    #: (hub, device, reason) -> (readings, first and last measured_at)
    suspicious: dict[tuple[str, UUID, str], tuple[int, datetime, datetime]] = {}
    for key, patient_id, tenant_id, late, reason, hub_id, device_id, measured_at in new:
        result.late += bool(late)
        if reason is not None:
            result.quarantined += 1
            result.quarantine_reasons[key] = reason
            group = (hub_id, device_id, reason)
            n, first, last = suspicious.get(group, (0, measured_at, measured_at))
            suspicious[group] = (n + 1, min(first, measured_at), max(last, measured_at))
            continue
        if patient_id is None:
            result.unattributed += 1
            continue
        candidates.append(alerts.Candidate(by_key[key], patient_id, tenant_id, bool(late)))
    if suspicious:
        result.security_events = _raise_security_events(conn, suspicious)
    outcome = engine.evaluate_stored(conn, candidates, rules)
    result.alerts_opened = outcome.opened
    result.alerts_updated = outcome.updated
    result.alerts.extend(outcome.alerts)
    reports = []
    for key, _, _, _, reason, hub_id, _, _ in new:
        if reason is None:
            r = by_key[key]
            reports.append(
                _DeviceReport(
                    hub_id, r.device.address, PROFILE_OF[r.measurement_type], r.hub_received_at
                )
            )
    return result, reports


def _raise_security_events(
    conn: Conn, suspicious: dict[tuple[str, UUID, str], tuple[int, datetime, datetime]]
) -> list[str]:
    """One security event per hub, device and reason; returns their details (the worker
    logs one warning line per batch for operators)."""
    items = sorted(suspicious.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2]))
    with conn.cursor() as cur:
        cur.execute(
            _INSERT_SECURITY_EVENTS,
            (
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                [k[2] for k, _ in items],
                [v[0] for _, v in items],
                [v[1] for _, v in items],
                [v[2] for _, v in items],
            ),
        )
        return [detail for (detail,) in cur.fetchall()]


def _record_results(
    conn: Conn, results: Sequence[CommandResult], result: StoreResult
) -> list[DeadLetter]:
    """Record hubs' results of commands; a result of no command of its hub is a dead letter."""
    letters: list[DeadLetter] = []
    for r in results:
        outcome = commands.record_result(conn, r)
        if outcome == "recorded":
            result.results += 1
        elif outcome == "duplicate":
            result.duplicate_results += 1
        else:  # dead-lettered with its reason (the worker logs and counts dead letters)
            letters.append(
                DeadLetter(topic_results(r.hub_id), outcome, r.model_dump_json().encode())
            )
    return letters


def store(
    conn: Conn,
    batches: Sequence[ReadingBatch] | Staged,
    *,
    dead_letters: Sequence[DeadLetter] = (),
    statuses: Sequence[StatusUpdate] = (),
    results: Sequence[CommandResult] = (),
    rules: Sequence[alerts.Rule] = alerts.DEFAULT_RULES,
    arrived_at: datetime | None = None,
) -> StoreResult:
    """Store validated reading batches, dead letters, hub statuses and hubs' results of
    commands (`ingest.commands.record_result`) in one transaction.

    `batches` may be given already staged (`stage(batches)`), as the worker does.

    `arrived_at` is when the readings reached the ingest tier (the worker's receive
    time): a reading is marked late when it reached the hub, or the ingest tier (a hub's
    outbox replayed after an outage), more than `LATE_AFTER` after it was measured.

    On return everything is committed (or, when the caller already holds a transaction,
    written inside it as a savepoint). Raises psycopg errors unchanged: nothing of the
    batch is kept then, and the caller retries or isolates the offending message.
    """
    staged = batches if isinstance(batches, Staged) else stage(batches)
    nested = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        result, reports = _store_readings(conn, staged, rules, arrived_at)
        dead_letters = [*dead_letters, *_record_results(conn, results, result)]
        if dead_letters:
            conn.execute(
                _INSERT_DEAD_LETTERS,
                (
                    [_nul_free(d.topic) for d in dead_letters],
                    [_nul_free(d.reason) for d in dead_letters],
                    [d.payload for d in dead_letters],
                ),
            )
            result.dead_letters = len(dead_letters)
        if statuses:
            latest: dict[str, StatusUpdate] = {}
            for s in statuses:  # arrival order: the last one of each hub wins
                latest[s.status.hub_id] = s
            # The newest status of each hub, its devices and their history (ingest.health).
            health.record_statuses(conn, list(latest.values()))
            result.statuses = len(statuses)
            reports.extend(
                _DeviceReport(s.status.hub_id, d.address, d.profile, s.received_at)
                for s in latest.values()
                for d in s.status.devices
            )
        _remember_last_hubs(conn, reports)
        if nested and result.received:
            # Inside a caller's transaction the commit that empties the stage is not ours.
            conn.execute(f"TRUNCATE {_STAGE}")
    return result
