"""The SQL of the FHIR API. Every query is confined by `queries.visible` (the one rule
of what a caller sees); filters are fixed fragments, values bound parameters."""

from __future__ import annotations

#: What an Observation is made of: a reading and the transaction that stored it.
_READING_COLUMNS = """k.stored_xid::text AS xid, k.stored_at, r.idempotency_key, r.measured_at,
       r.measurement_type, r."values", r.status, r.event, r.clock_source, r.clock_offset_s,
       r.hub_clock_synced, r.late, r.device_id, r.patient_id"""

#: Readings with the transaction that stored them, in commit order, below the horizon
#: and from a position on (`{scope}`: visible on readings `r` and patients `p`): a pull
#: of every resident the caller sees.
OBSERVATIONS_SQL = f"""
SELECT {_READING_COLUMNS}
FROM reading_keys k
-- A probe per key, in the keys' index order: the page streams (LIMIT stops the scan)
-- instead of joining every reading of the caller's to every key since the position.
CROSS JOIN LATERAL (
    SELECT * FROM readings r
    WHERE r.measured_at = k.measured_at AND r.idempotency_key = k.idempotency_key
    LIMIT 1
) r
JOIN patients p ON p.id = r.patient_id
WHERE {{scope}}
  AND k.stored_xid < %(horizon)s::text::xid8
  AND (k.stored_xid, k.idempotency_key) >= (%(after_xid)s::text::xid8, %(after_key)s)
  {{filters}}
ORDER BY k.stored_xid, k.idempotency_key
LIMIT %(limit)s
"""

#: One resident's readings in commit order (`patient=`): from the resident's readings
#: (readings_patient_time) to their keys, a resident's history being small beside the
#: keys of every principal since the position.
OBSERVATIONS_OF_PATIENT_SQL = f"""
SELECT {_READING_COLUMNS}
FROM readings r
JOIN reading_keys k ON k.idempotency_key = r.idempotency_key AND k.measured_at = r.measured_at
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND {{scope}}
  AND k.stored_xid < %(horizon)s::text::xid8
  AND (k.stored_xid, k.idempotency_key) >= (%(after_xid)s::text::xid8, %(after_key)s)
  {{filters}}
ORDER BY k.stored_xid, k.idempotency_key
LIMIT %(limit)s
"""

#: One reading by key (a read of an Observation).
OBSERVATION_SQL = f"""
SELECT {_READING_COLUMNS}
FROM reading_keys k
JOIN readings r ON r.idempotency_key = k.idempotency_key AND r.measured_at = k.measured_at
JOIN patients p ON p.id = r.patient_id
WHERE k.idempotency_key = %(key)s AND {{scope}}
"""

#: A subject-access export: every reading of one resident, in commit order.
PATIENT_READINGS_SQL = f"""
SELECT {_READING_COLUMNS}
FROM readings r
JOIN reading_keys k ON k.idempotency_key = r.idempotency_key AND k.measured_at = r.measured_at
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND {{scope}}
ORDER BY r.measured_at, r.idempotency_key
"""

_PATIENT_COLUMNS = "p.id, p.tenant_id, p.display_name, p.created_at, p.deactivated_at"

#: Residents by id, a page at a time (`{scope}`: visible(at=None)).
PATIENTS_SQL = f"""
SELECT {_PATIENT_COLUMNS} FROM patients p
WHERE {{scope}} AND p.id > %(after)s::uuid {{filters}}
ORDER BY p.id
LIMIT %(limit)s
"""

_DEVICE_COLUMNS = "d.id, d.stable_id, d.address, d.manufacturer, d.model, d.serial, d.firmware"

#: Devices assigned (ever) to a resident the caller sees, with those residents.
DEVICES_SQL = f"""
SELECT {_DEVICE_COLUMNS}, x.patients
FROM devices d
CROSS JOIN LATERAL (
    SELECT array_agg(DISTINCT da.patient_id) AS patients
    FROM device_assignments da
    JOIN patients p ON p.id = da.patient_id AND p.tenant_id = da.tenant_id
    WHERE da.device_id = d.id AND {{scope}} {{filters}}
) x
WHERE x.patients IS NOT NULL AND d.id > %(after)s::uuid {{device}}
ORDER BY d.id
LIMIT %(limit)s
"""

#: Devices by id (an _include, a subject-access export: ids already confined).
DEVICES_BY_ID_SQL = f"SELECT {_DEVICE_COLUMNS} FROM devices d WHERE d.id = ANY(%(ids)s::uuid[])"

#: Assignment periods of residents the caller sees.
ASSIGNMENTS_SQL = """
SELECT da.id, da.device_id, da.patient_id, da.started_at, da.ended_at
FROM device_assignments da
JOIN patients p ON p.id = da.patient_id AND p.tenant_id = da.tenant_id
WHERE {scope} AND da.id > %(after)s::uuid {filters}
ORDER BY da.id
LIMIT %(limit)s
"""

#: Alerts the caller sees, with the type of the reading that raised them.
FLAGS_SQL = """
SELECT a.id, a.patient_id, a.rule, a.severity, a.status, a.reason, a.last_reason,
       a.opened_at, a.resolved_at,
       coalesce(a.first_reading_key, a.last_reading_key) AS reading_key,
       (SELECT r.measurement_type FROM reading_keys k
        JOIN readings r ON r.idempotency_key = k.idempotency_key
                       AND r.measured_at = k.measured_at
        WHERE k.idempotency_key = coalesce(a.first_reading_key, a.last_reading_key)
        LIMIT 1) AS reading_type
FROM alerts a
JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
WHERE {scope} AND a.id > %(after)s::uuid {filters}
ORDER BY a.id
LIMIT %(limit)s
"""

#: What the audit log holds about one resident (a subject-access export).
AUDIT_SQL = """
SELECT id, at, subject, role, tenant_id, action, resource, patient_id, detail
FROM audit_log WHERE patient_id = %(patient)s ORDER BY id
"""

#: Every threshold set of one resident.
THRESHOLDS_SQL = """
SELECT id, patient_id, version, programme, rules, created_by, created_at, applies_from, note
FROM threshold_sets WHERE patient_id = %(patient)s ORDER BY version
"""

FIRST_UUID = "00000000-0000-0000-0000-000000000000"
