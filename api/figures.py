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

from api.csv_export import safe_cell
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

# Per product of the principal's fleet (devices it owns): how many devices are in each
# state now (device_state_changes keeps why: a retired device is lost, broken or
# scrapped in its retirement's detail->>'retired_as' or reason).
DEVICES_BY_STATE = Figure(
    "devices",
    "Devices per product and state",
    (
        "product_id",
        "kind",
        "manufacturer",
        "model",
        "devices",
        "in_use",
        "in_stock",
        "returned",
        "in_quarantine",
        "in_repair",
        "lost",
        "retired_other",
    ),
    """
SELECT pr.id AS product_id, pr.kind, pr.manufacturer, pr.model, count(*)::int AS devices,
       (count(*) FILTER (WHERE d.state = 'assigned'))::int AS in_use,
       (count(*) FILTER (WHERE d.state = 'in_stock'))::int AS in_stock,
       (count(*) FILTER (WHERE d.state = 'returned'))::int AS returned,
       (count(*) FILTER (WHERE d.state = 'quarantine'))::int AS in_quarantine,
       (count(*) FILTER (WHERE d.state = 'repair'))::int AS in_repair,
       (count(*) FILTER (WHERE d.state = 'retired' AND r.retired_as = 'lost'))::int AS lost,
       (count(*) FILTER (WHERE d.state = 'retired'
                         AND r.retired_as IS DISTINCT FROM 'lost'))::int AS retired_other
FROM devices d
JOIN products pr ON pr.id = d.product_id
LEFT JOIN LATERAL (
    SELECT coalesce(c.detail->>'retired_as', c.reason) AS retired_as
    FROM device_state_changes c
    WHERE c.device_id = d.id AND c.to_state = 'retired'
    ORDER BY c.at DESC, c.id DESC LIMIT 1
) r ON d.state = 'retired'
WHERE d.owner_tenant_id = %(tenant)s
GROUP BY pr.id, pr.kind, pr.manufacturer, pr.model
ORDER BY pr.kind, pr.manufacturer, pr.model, pr.id
""",
)

# Per product and state: the device-days the principal's devices spent in the state
# within the period, the stays that overlapped it, and the mean length of the stays that
# ended in it (turnaround: returned, quarantine, repair). A stay runs from a transition
# into the state to the device's next transition (or now).
DAYS_IN_STATE = Figure(
    "days-in-state",
    "Days in each state per product",
    (
        "product_id",
        "kind",
        "manufacturer",
        "model",
        "state",
        "devices",
        "stays",
        "device_days",
        "mean_days_per_finished_stay",
    ),
    """
WITH stays AS (
    SELECT c.device_id, c.to_state AS state, c.at AS since,
           lead(c.at) OVER (PARTITION BY c.device_id ORDER BY c.at, c.id) AS until
    FROM device_state_changes c
    JOIN devices d ON d.id = c.device_id AND d.owner_tenant_id = %(tenant)s
)
SELECT pr.id AS product_id, pr.kind, pr.manufacturer, pr.model, s.state,
       count(DISTINCT s.device_id)::int AS devices, count(*)::int AS stays,
       round((sum(extract(epoch FROM least(coalesce(s.until, now()), %(end)s)
                                   - greatest(s.since, %(start)s))) / 86400)::numeric, 2)
           ::float8 AS device_days,
       round((avg(extract(epoch FROM s.until - s.since) / 86400)
              FILTER (WHERE s.until IS NOT NULL AND s.until <= %(end)s))::numeric, 2)
           ::float8 AS mean_days_per_finished_stay
FROM stays s
JOIN devices d ON d.id = s.device_id
JOIN products pr ON pr.id = d.product_id
WHERE s.since < %(end)s AND coalesce(s.until, now()) > %(start)s
GROUP BY pr.id, pr.kind, pr.manufacturer, pr.model, s.state
ORDER BY pr.kind, pr.manufacturer, pr.model, pr.id, s.state
""",
)

FIGURES: dict[str, Figure] = {
    f.name: f for f in (DEVICES_BY_STATE, DAYS_IN_STATE, FAULTS, READINGS_PER_WEEK)
}


def to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV with a header line (RFC 4180, \\r\\n line ends); cells that a
    spreadsheet would run as formulas are quoted (api.csv_export.safe_cell)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    return out.getvalue()
