"""The SQL of fleet health: every query is confined to the caller's principal (hubs of
its tenant; with a `care_units` claim, hubs serving residents of those units).

Filters are fixed SQL fragments chosen in code; values are always bound parameters.
One statement per answer: the device aggregates of a page are joined, never fetched
per hub.
"""

from __future__ import annotations

from ingest.health import ERROR_READING_SQL

#: Sets of hubs the filters use, each computed once per statement (MATERIALIZED) from
#: the side that is small: a care unit's residents (patients_care_unit), the hubs placed
#: at their homes and the hubs whose allow-lists hold their assigned devices; devices at
#: low battery (the partial battery index). Unreferenced, they cost nothing.
CTES = """
WITH unit_hubs AS MATERIALIZED (
    SELECT hp.hub_id FROM patients p
    JOIN hub_placements hp ON hp.patient_id = p.id AND hp.ended_at IS NULL
    WHERE p.tenant_id = %(tenant)s AND p.care_unit_id = ANY(%(units)s::uuid[])
    UNION
    SELECT hd.hub_id FROM patients p
    JOIN device_assignments da ON da.patient_id = p.id AND da.ended_at IS NULL
    JOIN hub_devices hd ON hd.device_id = da.device_id AND hd.ended_at IS NULL
    WHERE p.tenant_id = %(tenant)s AND p.care_unit_id = ANY(%(units)s::uuid[])
),
low_battery AS MATERIALIZED (
    SELECT DISTINCT b.hub_id FROM hub_device_health b
    WHERE b.listed AND b.battery_level <= %(battery)s
)
"""

#: Hubs placed at the home of a resident of the units, or whose open allow-list holds a
#: device now assigned to one.
HUB_IN_UNITS = "AND h.id IN (SELECT hub_id FROM unit_hubs)"

#: Plans over thousands of hubs look costly enough for JIT, whose compiling costs more
#: than the query (40 ms of a 50 ms list): off for the answer's transaction.
NO_JIT = "SET LOCAL jit = off"

FILTERS = {
    "online": "AND h.online",
    "offline": "AND NOT h.online",
    "unknown": "AND h.online IS NULL",
    "offline_for": "AND NOT h.online AND h.state_since < now() - %(offline_for)s",
    "battery": "AND h.id IN (SELECT hub_id FROM low_battery)",
    "after": "AND h.id > %(after)s",
}

_STATE = "CASE WHEN h.online THEN 'online' WHEN NOT h.online THEN 'offline' ELSE 'unknown' END"

_HUB_COLUMNS = f"""
    h.id AS hub_id, {_STATE} AS state, h.state_since, h.last_seen_at, h.last_status_at,
    h.software_version, h.config_version_applied AS config_version,
    nullif(h.config_version, 0) AS config_version_issued, h.outbox_depth, h.outbox_oldest_age_s,
    h.disk_free_bytes, h.alarms,
    coalesce(d.devices, 0) AS devices, d.lowest_battery, coalesce(d.failing, 0) AS failing_devices
"""

_DEVICE_AGGREGATES = """
LEFT JOIN LATERAL (
    SELECT count(*)::int AS devices, min(x.battery_level) AS lowest_battery,
           (count(*) FILTER (WHERE x.consecutive_failures > 0))::int AS failing
    FROM hub_device_health x WHERE x.hub_id = h.id AND x.listed
) d ON true
"""

#: `{filters}` (from FILTERS) narrow the page; `{scope}` (the same, without `after`)
#: the total. Parameters: tenant, limit, units and battery (None when not filtered on).
HUB_LIST_SQL = f"""{CTES}
SELECT {_HUB_COLUMNS},
       (SELECT count(*) FROM hubs h WHERE h.tenant_id = %(tenant)s {{scope}}) AS total
FROM (
    SELECT * FROM hubs h WHERE h.tenant_id = %(tenant)s {{filters}}
    ORDER BY h.id LIMIT %(limit)s
) h
{_DEVICE_AGGREGATES}
ORDER BY h.id
"""

HUB_SQL = f"""{CTES}
SELECT {_HUB_COLUMNS}
FROM hubs h
{_DEVICE_AGGREGATES}
WHERE h.id = %(hub)s AND h.tenant_id = %(tenant)s {{scope}}
"""

#: The hub's devices as its status reported them, with the registry's device on its
#: open allow-list of that address, and that device's error readings of 30 days.
HUB_DEVICES_SQL = f"""
SELECT x.address, x.profile, dev.id AS device_id, dev.manufacturer, dev.model, dev.serial,
       coalesce(x.firmware, dev.firmware) AS firmware, x.last_seen_at, x.last_reading_at,
       x.rssi, x.battery_level, x.sessions_failed, x.consecutive_failures, x.last_error,
       coalesce(e.n, 0) AS error_readings_30d, x.reported_at
FROM hub_device_health x
LEFT JOIN LATERAL (
    SELECT d.* FROM hub_devices hd JOIN devices d ON d.id = hd.device_id
    WHERE hd.hub_id = x.hub_id AND hd.ended_at IS NULL AND upper(d.address) = x.address
    ORDER BY hd.started_at DESC LIMIT 1
) dev ON true
LEFT JOIN LATERAL (
    SELECT count(*)::int AS n FROM readings r
    WHERE r.device_id = dev.id AND r.measured_at > now() - interval '30 days'
      AND {ERROR_READING_SQL}
) e ON true
WHERE x.hub_id = %(hub)s AND x.listed
ORDER BY x.address
"""

HUB_HISTORY_SQL = """
SELECT f.at, f.hub_id, f.address, f.reasons, f.snapshot
FROM fleet_health_history f
WHERE f.hub_id = %(hub)s AND f.address IS NULL AND f.at >= %(since)s
ORDER BY f.at DESC, f.id DESC
LIMIT %(limit)s
"""

#: The device of the principal's fleet (its owner), or one on an allow-list of its hubs.
DEVICE_OF_TENANT_SQL = """
SELECT upper(d.address) AS address FROM devices d
WHERE d.id = %(device)s AND (d.owner_tenant_id = %(tenant)s OR EXISTS (
    SELECT 1 FROM hub_devices hd JOIN hubs h ON h.id = hd.hub_id
    WHERE hd.device_id = d.id AND h.tenant_id = %(tenant)s))
"""

#: A device's history on the principal's hubs only, while it was on their allow-list
#: (and the row saying a hub no longer lists it).
DEVICE_HISTORY_SQL = """
SELECT f.at, f.hub_id, f.address, f.reasons, f.snapshot
FROM fleet_health_history f
JOIN hubs h ON h.id = f.hub_id AND h.tenant_id = %(tenant)s
WHERE f.address = %(address)s AND f.at >= %(since)s
  AND EXISTS (SELECT 1 FROM hub_devices hd
              WHERE hd.hub_id = f.hub_id AND hd.device_id = %(device)s
                AND hd.started_at <= f.at
                AND (hd.ended_at IS NULL OR f.at < hd.ended_at OR f.reasons = '{removed}'))
ORDER BY f.at DESC, f.id DESC
LIMIT %(limit)s
"""

#: How many hubs match `{scope}` (the total of a page past the end).
HUB_COUNT_SQL = f"""{CTES}
SELECT count(*) AS n FROM hubs h WHERE h.tenant_id = %(tenant)s {{scope}}
"""
