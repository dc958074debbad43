"""The API's SQL: every query is scoped by the caller's tenant (and care units).

Filters are fixed SQL fragments chosen in code; values are always bound parameters.
"""

from __future__ import annotations

import uuid
from typing import Any

from api import schemas
from api.db import Conn

PATIENTS_SQL = """
SELECT p.id, p.display_name, p.programme, p.care_unit_id, count(a.id)::int AS open_alerts
FROM patients p
LEFT JOIN alerts a ON a.patient_id = p.id AND a.tenant_id = p.tenant_id AND a.status = 'open'
WHERE p.tenant_id = %(tenant)s {scope}
GROUP BY p.id
ORDER BY p.display_name, p.id
LIMIT %(limit)s OFFSET %(offset)s
"""

#: One patient of the tenant (and care units, when the token names some).
PATIENT_OF_TENANT_SQL = "SELECT 1 FROM patients p WHERE p.id = %(id)s AND p.tenant_id = %(tenant)s"

OBSERVATIONS_SQL = """
SELECT r.idempotency_key, r.measured_at, r.measurement_type, r."values", r.status, r.hub_id,
       r.clock_source, r.clock_offset_s, r.hub_clock_synced, r.late, r.raw,
       r.device_sequence, r.event,
       d.address, d.model, d.serial
FROM readings r
JOIN devices d ON d.id = r.device_id
WHERE r.patient_id = %(patient)s AND r.tenant_id = %(tenant)s {filters}
ORDER BY r.measured_at DESC, r.idempotency_key DESC
LIMIT %(limit)s
"""

#: The triage order of the alert list: open alerts first, then acknowledged ones, each
#: severity first (critical, high, medium, low) and the longest waiting (opened earliest)
#: first; then resolved alerts, the most recently (re)triggered first.
TRIAGE_ORDER = """
    CASE a.status WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END,
    CASE WHEN a.status <> 'resolved' THEN
        CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END
    END,
    CASE WHEN a.status <> 'resolved' THEN a.opened_at END,
    a.last_at DESC, a.id"""

# The triggering reading is found through reading_keys (key -> measured_at), so the
# lookup in the time-partitioned readings table is an index probe on
# (patient_id, measured_at) in one partition, not a scan of the patient's history.
ALERTS_SQL = (
    """
SELECT a.id, a.patient_id, p.display_name AS patient_display_name, a.rule, a.rule_version,
       a.severity, a.status, a.reason, a.count, a.measured_at, a.late, a.opened_at, a.last_at,
       a.acknowledged_by, a.acknowledged_at, a.resolved_by, a.resolved_at, a.resolution_note,
       a.last_reason, a.auto_resolved, a.threshold_set_id,
       coalesce(a.last_reading_key, a.first_reading_key) AS reading_id,
       rv."values"
FROM alerts a
JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
LEFT JOIN LATERAL (
    SELECT r."values"
    FROM readings r
    WHERE r.patient_id = a.patient_id
      AND r.measured_at = (
          SELECT k.measured_at FROM reading_keys k
          WHERE k.idempotency_key = coalesce(a.last_reading_key, a.first_reading_key)
      )
      AND r.idempotency_key = coalesce(a.last_reading_key, a.first_reading_key)
      AND r.tenant_id = a.tenant_id
    LIMIT 1
) rv ON true
WHERE a.tenant_id = %(tenant)s {filters}
ORDER BY """
    + TRIAGE_ORDER
    + """
LIMIT %(limit)s
"""
)

#: The care-unit scope of a token with a `care_units` claim, on patients `p`
#: (a fixed fragment; the units are a bound parameter).
CARE_UNIT_SCOPE = "AND p.care_unit_id = ANY(%(units)s::uuid[])"

UNATTRIBUTED_SQL = """
SELECT d.id AS device_id, d.address, d.manufacturer, d.model, d.serial, r.hub_id,
       r.quarantine, count(*)::int AS readings, min(r.measured_at) AS first_measured_at,
       max(r.measured_at) AS last_measured_at, sum(count(*)) OVER ()::bigint AS total
FROM devices d
JOIN readings r ON r.device_id = d.id AND r.patient_id IS NULL {filters}
WHERE d.owner_tenant_id = %(tenant)s
GROUP BY d.id, r.hub_id, r.quarantine
ORDER BY last_measured_at DESC, d.id, r.hub_id, r.quarantine NULLS FIRST
LIMIT %(limit)s
"""

#: Security events of the devices of the caller's principal (the principal of the
#: device's resident at the time, else its fleet owner), newest first, a page at a time
#: by id (`before`: the `next_before` of the page before).
SECURITY_EVENTS_SQL = """
SELECT id, at, kind, reason, hub_id, hub_tenant_id, device_id, readings,
       first_measured_at, last_measured_at, detail
FROM security_events
WHERE device_tenant_id = %(tenant)s {filters}
ORDER BY id DESC
LIMIT %(limit)s
"""

#: An alert status change by a person, announced like the engine's (ingest.alerts) at
#: commit: {alert_id, tenant_id, patient_id, status, rule, event}.
TRANSITION_SQL = """
WITH up AS (
    UPDATE alerts SET {assignments}
    WHERE id = %(id)s AND tenant_id = %(tenant)s AND {condition} {scope}
    RETURNING id, tenant_id, patient_id, status, rule
)
SELECT id, pg_notify(%(channel)s, json_build_object(
        'alert_id', id, 'tenant_id', tenant_id, 'patient_id', patient_id,
        'status', status, 'rule', rule, 'event', %(event)s::text)::text)
FROM up
"""
TRANSITION_SCOPE = (
    "AND patient_id IN (SELECT p.id FROM patients p"
    " WHERE p.tenant_id = %(tenant)s " + CARE_UNIT_SCOPE + ")"
)

# --- readiness ----------------------------------------------------------------------------

APPLIED_MIGRATIONS_SQL = "SELECT version FROM schema_migrations"
PARTITIONING_SQL = "SELECT value FROM hemhub_meta WHERE key = 'readings_partitioning'"
#: Readings stored with no resident: for want of an assignment, and quarantined (the
#: hub was not entitled to the device), apart; on the partial index readings_unattributed.
UNATTRIBUTED_COUNT_SQL = (
    "SELECT count(*) FILTER (WHERE quarantine IS NULL) AS n,"
    " count(*) FILTER (WHERE quarantine IS NOT NULL) AS quarantined"
    " FROM readings WHERE patient_id IS NULL"
)
DEAD_LETTERS_SQL = (
    "SELECT count(*) AS n, coalesce(sum(deliveries), 0) AS deliveries,"
    " max(last_received_at) AS last FROM dead_letters"
)


async def select_alerts(
    conn: Conn,
    tenant: str,
    *,
    care_units: list[uuid.UUID] | None = None,
    status: schemas.AlertStatus | None = None,
    patient_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
    limit: int = 1,
) -> list[schemas.Alert]:
    """The tenant's alerts (within `care_units` when given), filtered."""
    filters = []
    params: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if care_units is not None:
        filters.append(CARE_UNIT_SCOPE)
        params["units"] = care_units
    if status is not None:
        filters.append("AND a.status = %(status)s")
        params["status"] = status.value
    if patient_id is not None:
        filters.append("AND a.patient_id = %(patient)s")
        params["patient"] = patient_id
    if alert_id is not None:
        filters.append("AND a.id = %(alert)s")
        params["alert"] = alert_id
    cur = await conn.execute(ALERTS_SQL.format(filters=" ".join(filters)), params)
    return [schemas.Alert.model_validate(row) for row in await cur.fetchall()]
