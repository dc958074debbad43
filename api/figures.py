"""The follow-up figures a principal asks its assistive-device center for (issue 13
item 5): each figure is one table (fixed columns, one SQL statement) of the caller's
principal, answered as JSON rows or CSV. Counts only: no clinical value appears.

Parameters of every statement: tenant, start, end (the period, [start, end)).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.health import ERROR_READING_SQL


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    columns: tuple[str, ...]
    sql: str
    #: The column naming a resident, when rows are per resident (audited per resident).
    patient_column: str | None = None


# Per model of the principal's devices: how many it has, their readings flagged as a
# device fault in the period, how many devices had any, and the failing episodes its
# hubs reported (a device's sessions starting to fail, fleet_health_history).
FAULTS = Figure(
    "faults",
    "Faults and error readings per model",
    (
        "manufacturer",
        "model",
        "devices",
        "error_readings",
        "devices_with_error_readings",
        "failing_episodes",
        "devices_failing_now",
    ),
    f"""
WITH mine AS (
    SELECT d.id, upper(d.address) AS address, coalesce(d.manufacturer, '') AS manufacturer,
           coalesce(d.model, '') AS model
    FROM devices d WHERE d.owner_tenant_id = %(tenant)s
),
errors AS (
    SELECT r.device_id, count(*) AS n
    FROM readings r JOIN mine m ON m.id = r.device_id
    WHERE r.measured_at >= %(start)s AND r.measured_at < %(end)s AND {ERROR_READING_SQL}
    GROUP BY r.device_id
),
episodes AS (
    SELECT hd.device_id, count(*) AS n
    FROM fleet_health_history f
    JOIN hubs h ON h.id = f.hub_id AND h.tenant_id = %(tenant)s
    JOIN hub_devices hd ON hd.hub_id = f.hub_id AND hd.started_at <= f.at
         AND (hd.ended_at IS NULL OR f.at < hd.ended_at)
    JOIN mine m ON m.id = hd.device_id AND m.address = f.address
    WHERE f.address IS NOT NULL AND 'failing' = ANY(f.reasons)
      AND f.at >= %(start)s AND f.at < %(end)s
    GROUP BY hd.device_id
),
failing_now AS (
    SELECT DISTINCT hd.device_id
    FROM hub_device_health x
    JOIN hubs h ON h.id = x.hub_id AND h.tenant_id = %(tenant)s
    JOIN hub_devices hd ON hd.hub_id = x.hub_id AND hd.ended_at IS NULL
    JOIN mine m ON m.id = hd.device_id AND m.address = x.address
    WHERE x.listed AND x.consecutive_failures > 0
)
SELECT m.manufacturer, m.model, count(*)::int AS devices,
       coalesce(sum(e.n), 0)::int AS error_readings,
       count(e.device_id)::int AS devices_with_error_readings,
       coalesce(sum(p.n), 0)::int AS failing_episodes,
       count(f.device_id)::int AS devices_failing_now
FROM mine m
LEFT JOIN errors e ON e.device_id = m.id
LEFT JOIN episodes p ON p.device_id = m.id
LEFT JOIN failing_now f ON f.device_id = m.id
GROUP BY m.manufacturer, m.model
ORDER BY m.manufacturer, m.model
""",
)

# Per resident of the principal with a device assigned in the period, and per ISO week
# (Monday, UTC) of the period: the readings attributed to the resident (zero included).
READINGS_PER_WEEK = Figure(
    "readings-per-week",
    "Readings per resident per week",
    ("patient_id", "care_unit_id", "week", "readings"),
    """
WITH residents AS (
    SELECT DISTINCT p.id, p.care_unit_id
    FROM patients p JOIN device_assignments a ON a.patient_id = p.id
    WHERE p.tenant_id = %(tenant)s AND a.tenant_id = %(tenant)s {scope}
      AND a.started_at < %(end)s AND (a.ended_at IS NULL OR a.ended_at > %(start)s)
),
weeks AS (
    SELECT w::date AS week
    FROM generate_series(date_trunc('week', %(start)s::timestamptz AT TIME ZONE 'UTC'),
                         %(end)s::timestamptz AT TIME ZONE 'UTC' - interval '1 microsecond',
                         interval '1 week') AS w
),
counts AS (
    SELECT r.patient_id, (date_trunc('week', r.measured_at AT TIME ZONE 'UTC'))::date AS week,
           count(*) AS n
    FROM readings r JOIN residents x ON x.id = r.patient_id
    WHERE r.tenant_id = %(tenant)s AND r.measured_at >= %(start)s AND r.measured_at < %(end)s
    GROUP BY 1, 2
)
SELECT x.id AS patient_id, x.care_unit_id, w.week, coalesce(c.n, 0)::int AS readings
FROM residents x CROSS JOIN weeks w
LEFT JOIN counts c ON c.patient_id = x.id AND c.week = w.week
ORDER BY x.id, w.week
""",
    patient_column="patient_id",
)

FIGURES: dict[str, Figure] = {f.name: f for f in (FAULTS, READINGS_PER_WEEK)}


def to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV with a header line (RFC 4180, \\r\\n line ends)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
