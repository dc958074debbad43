"""The alert engine: a table of rules evaluated on newly stored, attributed readings.

A rule is data (name, version, severity, measurement type, predicate), so thresholds
can be versioned and extended without touching the storage path. Evaluation is pure
Python on the already-validated readings; only the outcome touches the database, in
the caller's transaction (the same one that stored the readings), so an alert exists
if and only if the reading that raised it was committed.

Invariants:
- only readings attributed to a patient are evaluated (unattributed never alert);
- a missing value (None: the device reported NaN/NRes) never fires a rule;
- one active (not resolved) alert per (patient, rule): the partial unique index
  `alerts_one_active`; a repeat increments `count` and moves `last_at` /
  `last_reading_key` instead of opening another alert;
- replays never alert twice, because dedupe (reading_keys) drops them before this.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from hemhub.contract import MeasurementType, Reading

Conn = psycopg.Connection[Any]

NOTIFY_CHANNEL = "hemhub_alerts"

LOINC_SYSTOLIC = "8480-6"
LOINC_DIASTOLIC = "8462-4"
MMHG_PER_KPA = 7.500615758


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


#: A predicate looks at one reading and returns the reason text when the rule fires.
Predicate = Callable[[Reading], str | None]


@dataclass(frozen=True)
class Rule:
    name: str
    version: int
    severity: Severity
    measurement: MeasurementType
    predicate: Predicate


@dataclass(frozen=True)
class Candidate:
    """A newly stored reading, with its attribution, to be evaluated."""

    reading: Reading
    patient_id: UUID
    tenant_id: str
    late: bool


@dataclass(frozen=True)
class Finding:
    """One reading that fired one rule."""

    rule: Rule
    patient_id: UUID
    tenant_id: str
    reading_key: str
    measured_at: datetime
    late: bool
    reason: str


@dataclass(frozen=True)
class AlertOutcome:
    opened: int
    updated: int
    #: (alert id, "opened" | "updated") per alert touched, in no particular order.
    alerts: tuple[tuple[UUID, str], ...] = ()


def _fmt_number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _fmt_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def pressure_mmhg(reading: Reading, loinc: str) -> float | None:
    """The value with that LOINC code in mm[Hg] (kPa converted), or None when missing."""
    for q in reading.values:
        if q.loinc == loinc:
            if q.value is None:  # a special value: missing, never a measurement
                return None
            if q.unit == "kPa":  # the BLE profile allows kPa; thresholds are in mm[Hg]
                return q.value * MMHG_PER_KPA
            return q.value
    return None


@dataclass(frozen=True)
class BloodPressureAbove:
    """Fires when systolic >= `systolic` or diastolic >= `diastolic` (mm[Hg])."""

    systolic: float
    diastolic: float

    def __call__(self, reading: Reading) -> str | None:
        sys_ = pressure_mmhg(reading, LOINC_SYSTOLIC)
        dia = pressure_mmhg(reading, LOINC_DIASTOLIC)
        fired = (sys_ is not None and sys_ >= self.systolic) or (
            dia is not None and dia >= self.diastolic
        )
        if not fired:
            return None
        shown = "/".join("?" if v is None else _fmt_number(v) for v in (sys_, dia))
        return (
            f"BP {shown} mm[Hg] at {_fmt_time(reading.measured_at)}"
            f" (threshold {_fmt_number(self.systolic)}/{_fmt_number(self.diastolic)})"
        )


BLOOD_PRESSURE_HIGH = Rule(
    name="blood_pressure_high",
    version=1,
    severity=Severity.HIGH,
    measurement=MeasurementType.BLOOD_PRESSURE,
    predicate=BloodPressureAbove(systolic=180, diastolic=110),
)

#: The rules evaluated by default, in order.
DEFAULT_RULES: tuple[Rule, ...] = (BLOOD_PRESSURE_HIGH,)


def evaluate(
    candidates: Iterable[Candidate], rules: Sequence[Rule] = DEFAULT_RULES
) -> list[Finding]:
    """Every (reading, rule) pair that fires; pure, no database."""
    by_type: dict[MeasurementType, list[Rule]] = {}
    for rule in rules:
        by_type.setdefault(rule.measurement, []).append(rule)
    findings: list[Finding] = []
    for c in candidates:
        for rule in by_type.get(c.reading.measurement_type, ()):
            reason = rule.predicate(c.reading)
            if reason is not None:
                findings.append(
                    Finding(
                        rule=rule,
                        patient_id=c.patient_id,
                        tenant_id=c.tenant_id,
                        reading_key=c.reading.idempotency_key,
                        measured_at=c.reading.measured_at,
                        late=c.late,
                        reason=reason,
                    )
                )
    return findings


_UPSERT = """
WITH up AS (
    INSERT INTO alerts AS a
        (tenant_id, patient_id, rule, rule_version, severity, reason,
         first_reading_key, last_reading_key, measured_at, late, count)
    SELECT * FROM unnest(
        %(tenant_id)s::text[], %(patient_id)s::uuid[], %(rule)s::text[],
        %(rule_version)s::int[], %(severity)s::text[], %(reason)s::text[],
        %(first_key)s::text[], %(last_key)s::text[], %(measured_at)s::timestamptz[],
        %(late)s::bool[], %(count)s::int[])
    ORDER BY 2, 3  -- a fixed lock order between concurrent workers (no deadlocks)
    ON CONFLICT (patient_id, rule) WHERE status <> 'resolved' DO UPDATE SET
        count = a.count + EXCLUDED.count,
        last_at = now(),
        last_reading_key = EXCLUDED.last_reading_key,
        late = a.late OR EXCLUDED.late
    RETURNING a.id, a.tenant_id, a.patient_id, a.status, a.rule, (a.xmax = 0) AS opened
)
SELECT id, opened, pg_notify(%(channel)s, json_build_object(
        'alert_id', id, 'tenant_id', tenant_id, 'patient_id', patient_id,
        'status', status, 'rule', rule,
        'event', CASE WHEN opened THEN 'opened' ELSE 'updated' END)::text)
FROM up
"""


def apply(conn: Conn, findings: Sequence[Finding]) -> AlertOutcome:
    """Open or update the alerts of these findings and announce each on NOTIFY.

    Runs in the caller's transaction; NOTIFY is delivered by PostgreSQL at commit,
    so listeners never hear of an alert that was rolled back.
    """
    if not findings:
        return AlertOutcome(0, 0)
    # One row per (patient, rule): ON CONFLICT DO UPDATE may not touch a row twice in
    # one statement, and several readings of a batch may repeat the same alert.
    groups: dict[tuple[UUID, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.patient_id, f.rule.name), []).append(f)
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "tenant_id",
            "patient_id",
            "rule",
            "rule_version",
            "severity",
            "reason",
            "first_key",
            "last_key",
            "measured_at",
            "late",
            "count",
        )
    }
    for (patient_id, rule_name), group in groups.items():
        group.sort(key=lambda f: (f.measured_at, f.reading_key))
        first, last = group[0], group[-1]
        cols["tenant_id"].append(first.tenant_id)
        cols["patient_id"].append(patient_id)
        cols["rule"].append(rule_name)
        cols["rule_version"].append(first.rule.version)
        cols["severity"].append(str(first.rule.severity))
        cols["reason"].append(first.reason)
        cols["first_key"].append(first.reading_key)
        cols["last_key"].append(last.reading_key)
        cols["measured_at"].append(first.measured_at)
        cols["late"].append(any(f.late for f in group))
        cols["count"].append(len(group))
    rows = conn.execute(_UPSERT, {**cols, "channel": NOTIFY_CHANNEL}).fetchall()
    touched = tuple((UUID(str(r[0])), "opened" if r[1] else "updated") for r in rows)
    opened = sum(1 for _, e in touched if e == "opened")
    return AlertOutcome(opened=opened, updated=len(touched) - opened, alerts=touched)
