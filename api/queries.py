"""The API's SQL: every query is scoped by the caller's tenant (and care units), and by
the residents other principals share with it, through one rule: `visible`.

Filters are fixed SQL fragments chosen in code; values are always bound parameters.
"""

from __future__ import annotations

import uuid
from typing import Any

from api import schemas
from api.db import Conn

#: A share in force for the caller's principal (`s`: patient_shares): not revoked, and
#: now within its period [starts_at, ends_at).
SHARE_IN_FORCE = (
    "s.grantee_tenant_id = %(tenant)s AND s.revoked_at IS NULL"
    " AND s.starts_at <= now() AND now() < s.ends_at"
)


def own(*, care_units: bool) -> str:
    """The caller's own principal's residents (patients `p`), within the token's care units
    when it names some: what the caller may change. Binds %(tenant)s (and %(units)s)."""
    units = " AND p.care_unit_id = ANY(%(units)s::uuid[])" if care_units else ""
    return f"(p.tenant_id = %(tenant)s{units})"


def visible(
    *,
    at: str | None,
    care_units: bool,
    data_tenant: str = "p.tenant_id",
    data_patient: str = "p.id",
) -> str:
    """THE rule of which patient data a caller sees, as a SQL condition on the resident's
    patients row `p` and the data row's tenant, patient and instant (`at`) columns.

    - Its own principal's residents (`own`), all their data (a token with a `care_units`
      claim: only the residents placed in those units).
    - Another principal's resident shared with the caller's principal by a share in
      force (not revoked, now within [starts_at, ends_at)), and of its data only what was
      measured within that period (`at`: readings' and alerts' measured_at; None for the
      resident itself). Nothing after revocation or expiry, nothing of other residents.
    - A token with a `care_units` claim sees no shared resident: a share is granted to a
      principal, not to its care units (fail closed; docs/api.md).

    Binds %(tenant)s (and %(units)s when `care_units`). The first conjunct is a coarse
    filter the planner can answer from indexes (the caller's tenant, or the residents
    shared with it: an array computed once); the second is the exact rule.
    """
    if care_units:
        return f"({data_tenant} = %(tenant)s AND {own(care_units=True)})"
    window = f" AND {at} >= s.starts_at AND {at} < s.ends_at" if at is not None else ""
    return (
        f"(({data_tenant} = %(tenant)s OR {data_patient} = ANY(ARRAY("
        f"SELECT s.patient_id FROM patient_shares s WHERE {SHARE_IN_FORCE})))"
        f" AND ({own(care_units=False)} OR EXISTS (SELECT 1 FROM patient_shares s"
        f" WHERE s.patient_id = p.id AND s.owner_tenant_id = p.tenant_id"
        f" AND {SHARE_IN_FORCE}{window})))"
    )


def scope_params(principal_tenant: str, care_units: list[uuid.UUID] | None) -> dict[str, Any]:
    """The parameters `visible` binds."""
    return {"tenant": principal_tenant, "units": care_units}


PATIENTS_SQL = """
SELECT p.id, p.display_name, p.programme, p.tenant_id AS principal, p.deactivated_at,
       CASE WHEN p.tenant_id = %(tenant)s THEN p.care_unit_id END AS care_unit_id,
       (SELECT count(*) FROM alerts a
        WHERE a.patient_id = p.id AND a.tenant_id = p.tenant_id AND a.status = 'open'
          AND {alert_scope})::int AS open_alerts
FROM patients p
WHERE {scope} {active}
ORDER BY p.display_name, p.id
LIMIT %(limit)s OFFSET %(offset)s
"""

#: The residents' administrative records (`{scope}`: `own(...)`), by name.
RESIDENTS_SQL = """
SELECT p.id, p.tenant_id, p.display_name, p.programme, p.care_unit_id, p.created_at,
       p.deactivated_at, p.deactivated_by, p.deactivation_reason
FROM patients p
WHERE {scope} {active}
ORDER BY p.display_name, p.id
LIMIT %(limit)s OFFSET %(offset)s
"""

#: One patient the caller may reach (`{scope}`: `own(...)`, or `visible(at=None, ...)`).
PATIENT_IN_SCOPE_SQL = "SELECT p.tenant_id FROM patients p WHERE p.id = %(id)s AND {scope}"

OBSERVATIONS_SQL = """
SELECT r.idempotency_key, r.measured_at, r.measurement_type, r."values", r.status, r.hub_id,
       r.clock_source, r.clock_offset_s, r.hub_clock_synced, r.late, r.raw,
       r.device_sequence, r.event,
       d.address, d.model, d.serial
FROM readings r
JOIN devices d ON d.id = r.device_id
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND {scope} {filters}
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
SELECT a.id, a.patient_id, a.tenant_id AS principal, p.display_name AS patient_display_name,
       a.rule, a.rule_version, a.severity, a.status, a.reason, a.count, a.measured_at,
       a.late, a.opened_at, a.last_at,
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
WHERE {scope} {filters}
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

#: The residents shared with the caller's principal now or later (not revoked, not
#: expired): a live stream's cheap pre-filter of other principals' alert events; what it
#: shows is re-read under `visible`.
SHARED_PATIENTS_SQL = (
    "SELECT DISTINCT s.patient_id FROM patient_shares s"
    " WHERE s.grantee_tenant_id = %(tenant)s AND s.revoked_at IS NULL AND now() < s.ends_at"
)

# --- principals and shares -----------------------------------------------------------------

PRINCIPALS_SQL = "SELECT id, name, created_at FROM tenants {where} ORDER BY id"
CREATE_PRINCIPAL_SQL = (
    "INSERT INTO tenants (id, name) VALUES (%(id)s, %(name)s) ON CONFLICT (id) DO NOTHING"
    " RETURNING id, name, created_at"
)
RENAME_PRINCIPAL_SQL = (
    "UPDATE tenants SET name = %(name)s WHERE id = %(id)s RETURNING id, name, created_at"
)
RENAME_CARE_UNIT_SQL = (
    "UPDATE care_units SET name = %(name)s WHERE id = %(id)s AND tenant_id = %(tenant)s"
    " RETURNING id"
)

#: Shares with their resident's name (`{where}`: a fixed fragment on `s`).
SHARES_SQL = """
SELECT s.id, s.patient_id, p.display_name AS patient_display_name,
       s.owner_tenant_id AS owner, s.grantee_tenant_id AS grantee, s.purpose, s.reason,
       s.starts_at, s.ends_at, s.granted_by, s.granted_at, s.revoked_at, s.revoked_by,
       s.revoke_reason,
       (s.revoked_at IS NULL AND s.starts_at <= now() AND now() < s.ends_at) AS in_force
FROM patient_shares s JOIN patients p ON p.id = s.patient_id
WHERE {where}
ORDER BY s.granted_at DESC, s.id
LIMIT %(limit)s
"""

GRANT_SHARE_SQL = """
INSERT INTO patient_shares
    (patient_id, owner_tenant_id, grantee_tenant_id, purpose, reason, starts_at, ends_at,
     granted_by)
VALUES (%(patient)s, %(tenant)s, %(grantee)s, %(purpose)s, %(reason)s,
        coalesce(%(starts_at)s, now()), %(ends_at)s, %(sub)s)
RETURNING id
"""

#: Revoke a share of the caller's principal; NULL row: none such, or revoked already.
REVOKE_SHARE_SQL = """
UPDATE patient_shares SET revoked_at = now(), revoked_by = %(sub)s, revoke_reason = %(reason)s
WHERE id = %(id)s AND owner_tenant_id = %(tenant)s AND revoked_at IS NULL
RETURNING id
"""

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
    """The alerts the caller sees (`visible`: its principal's, within `care_units` when
    given, and those of residents shared with it, measured in the shared period), filtered."""
    filters = []
    params: dict[str, Any] = {**scope_params(tenant, care_units), "limit": limit}
    if status is not None:
        filters.append("AND a.status = %(status)s")
        params["status"] = status.value
    if patient_id is not None:
        filters.append("AND a.patient_id = %(patient)s")
        params["patient"] = patient_id
    if alert_id is not None:
        filters.append("AND a.id = %(alert)s")
        params["alert"] = alert_id
    scope = visible(
        at="a.measured_at", care_units=care_units is not None, data_tenant="a.tenant_id"
    )
    cur = await conn.execute(ALERTS_SQL.format(scope=scope, filters=" ".join(filters)), params)
    return [schemas.Alert.model_validate(row) for row in await cur.fetchall()]
