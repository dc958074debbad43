"""Fleet health from the hub status stream: each hub's and device's last report, and a
history that stays small (changes, and a sample every `SAMPLE_EVERY`).

`record_statuses` runs inside `ingest.pipeline.store`'s transaction, with the newest
status of each hub in the batch: two set-based statements whatever the batch holds.
An older status (by ingest's receive time) never overwrites a newer one, and writes no
history. A last will (online false, no device list) keeps the hub's other values and
its devices as last reported. See ingest/sql/0014_fleet_health.sql.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from ingest.pipeline import StatusUpdate

Conn = psycopg.Connection[Any]

#: One history row per hub and device at least this often while nothing changes.
SAMPLE_EVERY = timedelta(hours=6)
#: A device whose health did not change but for its last session and RSSI is rewritten
#: at most this often (at a status a minute, most statuses change nothing else): its
#: `last_seen_at`, `rssi` and `reported_at` may be this much behind the hub's status.
DEVICE_REFRESH = timedelta(minutes=5)
#: A device at or below this battery level (percent) is "battery low".
BATTERY_LOW = 20
#: How long history rows are kept (`prune_history`).
KEEP_SAMPLES = timedelta(days=30)
KEEP_CHANGES = timedelta(days=400)

#: Reading status flags that say the device itself failed (not a clinical finding), and
#: device events that do; the partial index readings_device_errors (0014) names the same.
DEVICE_ERROR_FLAGS = (
    "sensor_malfunction",
    "general_device_fault",
    "time_fault",
    "strip_insertion_error",
    "equipment_malfunction",
    "sensor_malfunctioning",
    "unknown_sensor_connected",
)
DEVICE_ERROR_EVENTS = ("device_error", "jam")

#: The predicate of an error reading on readings `r` (the partial index's, verbatim).
ERROR_READING_SQL = (
    "(r.status && ARRAY["
    + ", ".join(f"'{f}'" for f in DEVICE_ERROR_FLAGS)
    + "]::text[] OR r.event->>'kind' IN ("
    + ", ".join(f"'{e}'" for e in DEVICE_ERROR_EVENTS)
    + "))"
)

_HUB_CHANGED = """(
    p.online IS DISTINCT FROM i.online
    OR p.software_version <> i.status->>'software_version'
    OR p.config_version_applied <> (i.status->>'config_version')::integer
)"""

# Statement 1: the hubs. `prev` reads the rows as they were before this statement (one
# snapshot for every part of a statement), `up` writes the new ones; a history row is
# written when the hub changed or its sample is due. Returns the hubs whose status was
# applied, and whether they were sampled (their devices get a sample row too).
_RECORD_HUBS = f"""
WITH incoming AS (
    SELECT e->>'id' AS id, (e->'status'->>'online')::boolean AS online, e->'status' AS status,
           (e->>'at')::timestamptz AS at
    FROM jsonb_array_elements(%(batch)s::jsonb) AS e
),
prev AS (
    SELECT h.id, h.online, h.software_version, h.config_version_applied, h.last_sample_at
    FROM hubs h JOIN incoming i ON i.id = h.id
),
up AS (
    INSERT INTO hubs AS h (
        id, online, last_status, last_status_at, last_seen_at, state_since,
        software_version, config_version_applied, outbox_depth, outbox_oldest_age_s,
        disk_free_bytes, alarms, last_sample_at)
    SELECT i.id, i.online, i.status, i.at, CASE WHEN i.online THEN i.at END, i.at,
           i.status->>'software_version', (i.status->>'config_version')::integer,
           (i.status->>'outbox_depth')::integer,
           (i.status->>'outbox_oldest_age_s')::double precision,
           (i.status->>'disk_free_bytes')::bigint,
           coalesce(ARRAY(SELECT jsonb_array_elements_text(i.status->'alarms')), '{{}}'),
           i.at
    FROM incoming i
    ORDER BY i.id
    ON CONFLICT (id) DO UPDATE SET
        online = EXCLUDED.online,
        last_status = EXCLUDED.last_status,
        last_status_at = EXCLUDED.last_status_at,
        last_seen_at = CASE WHEN EXCLUDED.online THEN EXCLUDED.last_status_at
                            ELSE h.last_seen_at END,
        state_since = CASE WHEN h.online IS DISTINCT FROM EXCLUDED.online
                             OR h.state_since IS NULL
                           THEN EXCLUDED.last_status_at ELSE h.state_since END,
        software_version = coalesce(EXCLUDED.software_version, h.software_version),
        config_version_applied = coalesce(EXCLUDED.config_version_applied,
                                          h.config_version_applied),
        outbox_depth = coalesce(EXCLUDED.outbox_depth, h.outbox_depth),
        outbox_oldest_age_s = CASE WHEN EXCLUDED.online THEN EXCLUDED.outbox_oldest_age_s
                                   ELSE h.outbox_oldest_age_s END,
        disk_free_bytes = coalesce(EXCLUDED.disk_free_bytes, h.disk_free_bytes),
        alarms = CASE WHEN EXCLUDED.online THEN EXCLUDED.alarms ELSE h.alarms END,
        last_sample_at = CASE
            WHEN h.last_sample_at IS NULL
              OR EXCLUDED.last_status_at >= h.last_sample_at + %(sample_every)s
              OR h.online IS DISTINCT FROM EXCLUDED.online
              OR h.software_version <> EXCLUDED.software_version
              OR h.config_version_applied <> EXCLUDED.config_version_applied
            THEN EXCLUDED.last_status_at ELSE h.last_sample_at END
    WHERE h.last_status_at IS NULL OR EXCLUDED.last_status_at >= h.last_status_at
    RETURNING h.id, h.last_sample_at = h.last_status_at AS sampled
),
history AS (
    INSERT INTO fleet_health_history (hub_id, address, at, reasons, snapshot)
    SELECT i.id, NULL, i.at,
           CASE WHEN {_HUB_CHANGED} THEN array_remove(ARRAY[
                    CASE WHEN p.online IS DISTINCT FROM i.online
                         THEN CASE WHEN i.online THEN 'online' ELSE 'offline' END END,
                    CASE WHEN p.software_version <> i.status->>'software_version'
                         THEN 'software' END,
                    CASE WHEN p.config_version_applied <> (i.status->>'config_version')::integer
                         THEN 'config' END], NULL)
                ELSE ARRAY['sample'] END,
           i.status - 'devices'
    FROM up JOIN incoming i ON i.id = up.id LEFT JOIN prev p ON p.id = up.id
    WHERE up.sampled
)
SELECT up.id, up.sampled FROM up
"""

_DEVICE_CHANGES = """array_remove(ARRAY[
    CASE WHEN p.address IS NULL THEN 'new' END,
    CASE WHEN p.address IS NOT NULL AND i.firmware IS NOT NULL
          AND p.firmware IS DISTINCT FROM i.firmware THEN 'firmware' END,
    CASE WHEN i.battery_level <= %(battery_low)s
          AND (p.battery_level IS NULL OR p.battery_level > %(battery_low)s)
         THEN 'battery_low' END,
    CASE WHEN i.battery_level > %(battery_low)s AND p.battery_level <= %(battery_low)s
         THEN 'battery_ok' END,
    CASE WHEN i.consecutive_failures > 0 AND coalesce(p.consecutive_failures, 0) = 0
         THEN 'failing' END,
    CASE WHEN i.consecutive_failures = 0 AND p.consecutive_failures > 0
         THEN 'recovered' END,
    CASE WHEN i.last_error IS NOT NULL AND p.last_error IS DISTINCT FROM i.last_error
         THEN 'error' END
]::text[], NULL)"""

# Statement 2: the devices of the applied online statuses (a last will lists none and
# leaves them as they were). Devices a hub no longer lists are marked unlisted, with a
# history row 'removed'; the others are upserted (listed again), with a row when they
# changed or were sampled.
_RECORD_DEVICES = f"""
WITH batch AS (
    SELECT e->>'hub_id' AS hub_id, (e->>'at')::timestamptz AS at,
           (e->>'sampled')::boolean AS sampled, e->'devices' AS devices
    FROM jsonb_array_elements(%(batch)s::jsonb) AS e
),
hubs_in AS (SELECT hub_id, at, sampled FROM batch),
incoming AS (
    SELECT s.hub_id, s.at, s.sampled, d.dev, upper(d.dev->>'address') AS address,
           d.dev->>'profile' AS profile,
           (d.dev->>'last_seen_at')::timestamptz AS last_seen_at,
           (d.dev->>'last_reading_at')::timestamptz AS last_reading_at,
           (d.dev->>'rssi')::integer AS rssi,
           (d.dev->>'battery_level')::integer AS battery_level,
           d.dev->>'firmware' AS firmware,
           coalesce((d.dev->>'readings')::integer, 0) AS readings,
           coalesce((d.dev->>'sessions_failed')::integer, 0) AS sessions_failed,
           coalesce((d.dev->>'consecutive_failures')::integer, 0) AS consecutive_failures,
           d.dev->>'last_error' AS last_error
    FROM batch s
    CROSS JOIN LATERAL jsonb_array_elements(s.devices) AS d (dev)
),
prev AS (
    SELECT h.* FROM hub_device_health h JOIN hubs_in s ON s.hub_id = h.hub_id WHERE h.listed
),
gone AS (
    UPDATE hub_device_health h SET listed = false
    FROM hubs_in s
    WHERE h.hub_id = s.hub_id AND h.listed
      AND NOT EXISTS (SELECT 1 FROM incoming i
                      WHERE i.hub_id = h.hub_id AND i.address = h.address)
    RETURNING h.hub_id, h.address, s.at, h.profile
),
up AS (
    INSERT INTO hub_device_health AS h (
        hub_id, address, profile, last_seen_at, last_reading_at, rssi, battery_level,
        firmware, readings, sessions_failed, consecutive_failures, last_error, reported_at)
    SELECT hub_id, address, profile, last_seen_at, last_reading_at, rssi, battery_level,
           firmware, readings, sessions_failed, consecutive_failures, last_error, at
    FROM incoming
    ORDER BY hub_id, address
    ON CONFLICT (hub_id, address) DO UPDATE SET
        profile = EXCLUDED.profile,
        last_seen_at = EXCLUDED.last_seen_at,
        last_reading_at = EXCLUDED.last_reading_at,
        rssi = EXCLUDED.rssi,
        battery_level = EXCLUDED.battery_level,
        firmware = EXCLUDED.firmware,
        readings = EXCLUDED.readings,
        sessions_failed = EXCLUDED.sessions_failed,
        consecutive_failures = EXCLUDED.consecutive_failures,
        last_error = EXCLUDED.last_error,
        reported_at = EXCLUDED.reported_at,
        listed = true
    -- Unchanged but for its last session and RSSI: rewritten every DEVICE_REFRESH only.
    WHERE NOT h.listed
       OR (h.profile, h.battery_level, h.firmware, h.consecutive_failures, h.last_error,
           h.last_reading_at, h.sessions_failed)
          IS DISTINCT FROM
          (EXCLUDED.profile, EXCLUDED.battery_level, EXCLUDED.firmware,
           EXCLUDED.consecutive_failures, EXCLUDED.last_error, EXCLUDED.last_reading_at,
           EXCLUDED.sessions_failed)
       OR EXCLUDED.reported_at >= h.reported_at + %(refresh)s
),
removed AS (
    INSERT INTO fleet_health_history (hub_id, address, at, reasons, snapshot)
    SELECT hub_id, address, at, ARRAY['removed'],
           jsonb_build_object('address', address, 'profile', profile)
    FROM gone
)
INSERT INTO fleet_health_history (hub_id, address, at, reasons, snapshot)
SELECT i.hub_id, i.address, i.at,
       CASE WHEN cardinality({_DEVICE_CHANGES}) > 0 THEN {_DEVICE_CHANGES}
            ELSE ARRAY['sample'] END,
       i.dev
FROM incoming i
LEFT JOIN prev p ON p.hub_id = i.hub_id AND p.address = i.address
WHERE i.sampled OR cardinality({_DEVICE_CHANGES}) > 0
"""


def record_statuses(conn: Conn, latest: Sequence[StatusUpdate]) -> None:
    """Store the newest status of each hub (one per hub, see the module docstring)."""
    if not latest:
        return
    ordered = sorted(latest, key=lambda s: s.status.hub_id)
    # The arrays' row estimates make these plans look costly enough for JIT, whose
    # compiling cost more than the statements (5x at 500 statuses; see ingest.pipeline).
    conn.execute("SET LOCAL jit = off")
    # One JSON document per statement, not arrays of JSON texts: psycopg quotes each
    # element of a text array with a regular expression, which cost 0.8 ms a status.
    hubs = ",".join(
        f'{{"id":{json.dumps(s.status.hub_id)},"at":"{s.received_at.isoformat()}",'
        f'"status":{s.status.model_dump_json()}}}'
        for s in ordered
    )
    applied = dict(
        conn.execute(_RECORD_HUBS, {"batch": f"[{hubs}]", "sample_every": SAMPLE_EVERY}).fetchall()
    )
    online = [s for s in ordered if s.status.online and s.status.hub_id in applied]
    if not online:
        return
    devices = ",".join(
        f'{{"hub_id":{json.dumps(s.status.hub_id)},"at":"{s.received_at.isoformat()}",'
        f'"sampled":{"true" if applied[s.status.hub_id] else "false"},'
        f'"devices":[{",".join(d.model_dump_json() for d in s.status.devices)}]}}'
        for s in online
    )
    conn.execute(
        _RECORD_DEVICES,
        {"batch": f"[{devices}]", "battery_low": BATTERY_LOW, "refresh": DEVICE_REFRESH},
    )


def prune_history(conn: Conn) -> None:
    """Drop history rows past their retention (a job of the ingest worker; through the
    owner's function: the runtime roles may not delete, see ingest.roles)."""
    conn.execute("SELECT hemhub_prune_health_history(%s, %s)", (KEEP_SAMPLES, KEEP_CHANGES))
