"""The SQL of the nurse's pages (triage queue, alert page, resident's chart).

Every query is confined by `api.queries.visible` (its `{scope}`); filters are fixed
fragments chosen in code, values are bound parameters.
"""

from __future__ import annotations

from api.queries import TRIAGE_ORDER

#: The reading that fired (or last repeated) an alert, found through reading_keys so
#: the time-partitioned readings table is probed by (patient_id, measured_at).
_FIRED_READING = """
LEFT JOIN LATERAL (
    SELECT r.idempotency_key, r.measurement_type, r."values", r.status, r.event
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
"""

#: Alerts with their resident, care unit and fired reading (`{scope}`: `visible` on
#: a.measured_at; `{filters}`: fixed fragments).
TRIAGE_SQL = (
    """
SELECT a.id, a.patient_id, a.tenant_id AS principal, p.display_name AS patient_display_name,
       p.programme,
       CASE WHEN p.tenant_id = %(tenant)s THEN p.care_unit_id END AS care_unit_id,
       CASE WHEN p.tenant_id = %(tenant)s THEN cu.name END AS care_unit_name,
       a.rule, a.rule_version, a.severity, a.status, a.reason, a.count, a.measured_at,
       a.opened_at, a.last_at, a.late, a.acknowledged_by, a.acknowledged_at, a.resolved_by,
       a.resolved_at, a.resolution_note, a.auto_resolved, a.threshold_set_id,
       rv.idempotency_key AS reading_id, rv.measurement_type, rv."values",
       rv.status AS reading_status, rv.event
FROM alerts a
JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
LEFT JOIN care_units cu ON cu.id = p.care_unit_id AND cu.tenant_id = p.tenant_id
"""
    + _FIRED_READING
    + """
WHERE {scope} {filters}
ORDER BY """
    + TRIAGE_ORDER
    + """
LIMIT %(limit)s
"""
)

#: The threshold versions of some residents, as rows of `ingest.thresholds.SETS_SQL`
#: in JSON (timestamps as text).
_SETS_JSON = """
(SELECT coalesce(json_agg(json_build_object(
        'patient_id', t.patient_id, 'id', t.id, 'version', t.version, 'programme', t.programme,
        'rules', t.rules, 'created_by', t.created_by, 'created_at', t.created_at,
        'applies_from', t.applies_from, 'note', t.note) ORDER BY t.applies_from, t.version), '[]')
 FROM threshold_sets t WHERE t.patient_id = ANY({patients}))"""

#: What the queue shows besides its rows, in one round trip: the unresolved alerts per
#: severity under the same scope and filters, the care units to filter by (`{units}`),
#: and the threshold versions of the residents shown (%(patients)s).
TRIAGE_EXTRAS_SQL = (
    """
SELECT
  (SELECT coalesce(json_object_agg(c.severity, c.n), '{{}}') FROM (
      SELECT a.severity, count(*)::int AS n
      FROM alerts a
      JOIN patients p ON p.id = a.patient_id AND p.tenant_id = a.tenant_id
      WHERE {scope} {filters}
      GROUP BY a.severity) c) AS counts,
  (SELECT coalesce(json_agg(json_build_object('id', u.id, 'name', u.name)
                            ORDER BY u.name, u.id), '[]')
   FROM care_units u WHERE u.tenant_id = %(tenant)s {units}) AS care_units,
  """
    + _SETS_JSON.format(patients="%(patients)s::uuid[]")
    + """ AS sets
"""
)

#: The filters of the queue: unresolved, in a care unit (of the caller's principal),
#: in a programme.
ACTIVE_FILTER = "AND a.status <> 'resolved'"
UNIT_FILTER = "AND p.tenant_id = %(tenant)s AND p.care_unit_id = %(care_unit)s"
PROGRAMME_FILTER = "AND p.programme = %(programme)s"
ALERT_FILTER = "AND a.id = %(alert)s"

#: A resident's readings of some types in [since, until), oldest first.
READINGS_SQL = """
SELECT r.idempotency_key, r.measured_at, r.measurement_type, r."values", r.status, r.event,
       r.clock_source, r.clock_offset_s, r.hub_clock_synced
FROM readings r
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND r.measurement_type = ANY(%(types)s)
  AND r.measured_at >= %(since)s AND r.measured_at < %(until)s AND {scope}
ORDER BY r.measured_at, r.idempotency_key
LIMIT %(limit)s
"""

#: What a person did with an alert, oldest first.
ALERT_EVENTS_SQL = """
SELECT at, actor, action, note FROM alert_events
WHERE alert_id = %(alert)s AND tenant_id = %(tenant)s
ORDER BY at, id
"""

INSERT_ALERT_EVENT_SQL = """
INSERT INTO alert_events (alert_id, tenant_id, actor, action, note)
VALUES (%(id)s, %(tenant)s, %(sub)s, %(event)s, %(note)s)
"""

#: Everything of the chart but its readings, in one round trip: the resident as the
#: chart heads it (`{scope}`: `visible(at=None)`), its alerts measured in the period
#: (markers; `{alert_scope}`), its active schedules each with its last valid reading (one
#: with some value) and the device errors (readings without any value) since then
#: (`{reading_scope}`), and its threshold versions.
CHART_CONTEXT_SQL = (
    """
SELECT p.id, p.display_name, p.programme,
       CASE WHEN p.tenant_id = %(tenant)s THEN cu.name END AS care_unit_name,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', a.id, 'measured_at', a.measured_at, 'rule', a.rule,
                   'severity', a.severity, 'status', a.status) ORDER BY a.measured_at), '[]')
        FROM alerts a
        WHERE a.patient_id = p.id AND a.tenant_id = p.tenant_id
          AND a.measured_at >= %(since)s AND a.measured_at < %(until)s AND {alert_scope}
       ) AS markers,
       (SELECT coalesce(json_agg(json_build_object(
                   'measurement_type', ms.measurement_type,
                   'every_s', extract(epoch FROM ms.every), 'starts_at', ms.starts_at,
                   'last_valid_at', last.measured_at, 'error_readings', errs.n,
                   'error_flags', errs.flags) ORDER BY ms.measurement_type), '[]')
        FROM monitoring_schedules ms
        LEFT JOIN LATERAL (
            SELECT r.measured_at FROM readings r
            WHERE r.patient_id = ms.patient_id AND r.measurement_type = ms.measurement_type
              AND jsonb_path_exists(r."values", '$[*] ? (@.value != null)') AND {reading_scope}
            ORDER BY r.measured_at DESC LIMIT 1
        ) last ON true
        LEFT JOIN LATERAL (
            SELECT count(*)::int AS n,
                   coalesce(array_agg(DISTINCT f) FILTER (WHERE f IS NOT NULL), '{{}}') AS flags
            FROM readings r LEFT JOIN LATERAL unnest(r.status) f ON true
            WHERE r.patient_id = ms.patient_id AND r.measurement_type = ms.measurement_type
              AND r.measured_at > coalesce(last.measured_at, ms.starts_at)
              AND NOT jsonb_path_exists(r."values", '$[*] ? (@.value != null)')
              AND r.event IS NULL AND {reading_scope}
        ) errs ON true
        WHERE ms.patient_id = p.id AND ms.active
       ) AS schedules,
       """
    + _SETS_JSON.format(patients="ARRAY[p.id]")
    + """ AS sets
FROM patients p
LEFT JOIN care_units cu ON cu.id = p.care_unit_id AND cu.tenant_id = p.tenant_id
WHERE p.id = %(patient)s AND {scope}
"""
)

#: The chart's readings: measured_at and values only, of the charted types, oldest
#: first; whether the hub could vouch for the time.
CHART_READINGS_SQL = """
SELECT r.measured_at, r.measurement_type, r."values",
       (NOT r.hub_clock_synced OR r.clock_source = 'no_device_time') AS unsure_time
FROM readings r
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND r.measurement_type = ANY(%(types)s)
  AND r.measured_at >= %(since)s AND r.measured_at < %(until)s AND {scope}
ORDER BY r.measured_at
"""

#: The dispenser's dose events in [since, until): (measured_at, kind).
DOSE_EVENTS_SQL = """
SELECT r.measured_at, r.event->>'kind' AS kind
FROM readings r
JOIN patients p ON p.id = r.patient_id
WHERE r.patient_id = %(patient)s AND r.measurement_type = 'medication_event'
  AND r.event IS NOT NULL AND r.measured_at >= %(since)s AND r.measured_at < %(until)s
  AND {scope}
ORDER BY r.measured_at
"""

#: Whether the resident ever had a dispenser event the caller sees.
HAS_DISPENSER_SQL = """
SELECT EXISTS (
    SELECT 1 FROM readings r JOIN patients p ON p.id = r.patient_id
    WHERE r.patient_id = %(patient)s AND r.measurement_type = 'medication_event' AND {scope}
) AS has
"""
