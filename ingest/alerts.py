"""Alert lifecycle core: findings open/update alerts, clears resolve them, NOTIFY announces.

The rules live elsewhere: `ingest.rules` judges newly stored readings against each
resident's versioned thresholds (`ingest.thresholds`), `ingest.schedule` runs the
time-driven rules (missing data, trends, technical) and auto-resolution. Both produce
`Finding`s and `Clear`s that `apply` and `resolve` write in the caller's transaction
(the same one that stored the readings), so an alert exists if and only if the reading
that raised it was committed. The static `Rule` table here remains for rules that need
no thresholds (`evaluate`, pure).

Invariants:
- only readings attributed to a patient are evaluated (unattributed never alert);
- a missing value (None: the device reported NaN/NRes) never fires a rule;
- one active (not resolved) alert per (patient, rule): the partial unique index
  `alerts_one_active`; a repeat increments `count` and moves `last_at` /
  `last_reading_key` instead of opening another alert;
- replays never alert twice, because dedupe (reading_keys) drops them before this;
- a worse repeat escalates the severity, a milder one never downgrades it;
- resolution: by a person (API) or by the engine when the condition clears
  (`resolve`, auto_resolved = true); clinical rules only once acknowledged.
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


SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


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
    """One reading (or one scheduled check) that fired one rule."""

    rule: str
    version: int
    severity: Severity
    patient_id: UUID
    tenant_id: str
    #: The reading that fired; None for a condition found by the scheduled evaluation.
    reading_key: str | None
    measured_at: datetime
    late: bool
    reason: str
    #: The threshold set that judged it (None: a programme profile or a static rule).
    threshold_set_id: UUID | None = None
    #: A repeat counts (a reading); a scheduled check that finds the condition still
    #: there does not, and only touches the alert when its reason or severity changed.
    counts: bool = True


@dataclass(frozen=True)
class Clear:
    """The condition of a rule is gone for a resident: resolve its active alert."""

    rule: str
    patient_id: UUID
    note: str
    #: Clinical rules resolve automatically only once a person acknowledged the alert:
    #: an abnormal value nobody has seen is never silently taken away.
    needs_ack: bool
    #: The time of the observation that clears it: an alert last fired by a reading
    #: measured at or after this stays (a late in-range reading clears nothing newer).
    after: datetime | None = None


@dataclass(frozen=True)
class AlertOutcome:
    opened: int
    updated: int
    #: (alert id, "opened" | "updated" | "resolved") per alert touched, in no particular order.
    alerts: tuple[tuple[UUID, str], ...] = ()
    resolved: int = 0

    def __add__(self, other: AlertOutcome) -> AlertOutcome:
        return AlertOutcome(
            self.opened + other.opened,
            self.updated + other.updated,
            self.alerts + other.alerts,
            self.resolved + other.resolved,
        )


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

#: Static rules evaluated besides the threshold-driven engine (ingest.rules): none by
#: default. BLOOD_PRESSURE_HIGH is what the engine applies from the programme profiles
#: (same name, version and reason); pass it, or rules of your own, to `evaluate` to
#: judge readings without a database.
DEFAULT_RULES: tuple[Rule, ...] = ()


def finding_of(
    c: Candidate,
    rule: str,
    version: int,
    severity: Severity,
    reason: str,
    threshold_set_id: UUID | None = None,
) -> Finding:
    """The finding of a rule fired by a candidate reading."""
    return Finding(
        rule=rule,
        version=version,
        severity=severity,
        patient_id=c.patient_id,
        tenant_id=c.tenant_id,
        reading_key=c.reading.idempotency_key,
        measured_at=c.reading.measured_at,
        late=c.late,
        reason=reason,
        threshold_set_id=threshold_set_id,
    )


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
                findings.append(finding_of(c, rule.name, rule.version, rule.severity, reason))
    return findings


_RANK = "array_position(ARRAY['low', 'medium', 'high', 'critical'], {})"

_UPSERT = f"""
WITH up AS (
    INSERT INTO alerts AS a
        (tenant_id, patient_id, rule, rule_version, severity, reason, last_reason,
         first_reading_key, last_reading_key, measured_at, last_measured_at, late, count,
         threshold_set_id)
    SELECT t, p, r, v, s, rs, lr, fk, lk, m, lm, l, c, ts FROM unnest(
        %(tenant_id)s::text[], %(patient_id)s::uuid[], %(rule)s::text[],
        %(rule_version)s::int[], %(severity)s::text[], %(reason)s::text[],
        %(last_reason)s::text[], %(first_key)s::text[], %(last_key)s::text[],
        %(measured_at)s::timestamptz[], %(last_measured_at)s::timestamptz[],
        %(late)s::bool[], %(count)s::int[], %(threshold_set_id)s::uuid[])
        AS u(t, p, r, v, s, rs, lr, fk, lk, m, lm, l, c, ts)
    ORDER BY 2, 3  -- a fixed lock order between concurrent workers (no deadlocks)
    ON CONFLICT (patient_id, rule) WHERE status <> 'resolved' DO UPDATE SET
        count = a.count + EXCLUDED.count,
        last_at = now(),
        last_reading_key = coalesce(EXCLUDED.last_reading_key, a.last_reading_key),
        last_reason = CASE WHEN EXCLUDED.last_measured_at >= a.last_measured_at
                           THEN EXCLUDED.last_reason ELSE a.last_reason END,
        last_measured_at = greatest(a.last_measured_at, EXCLUDED.last_measured_at),
        late = a.late OR EXCLUDED.late,
        -- a worse value escalates the alert; a milder repeat never downgrades it
        severity = CASE WHEN {_RANK.format("EXCLUDED.severity")} > {_RANK.format("a.severity")}
                        THEN EXCLUDED.severity ELSE a.severity END
    WHERE EXCLUDED.count > 0
       OR a.last_reason IS DISTINCT FROM EXCLUDED.last_reason
       OR {_RANK.format("EXCLUDED.severity")} > {_RANK.format("a.severity")}
    RETURNING a.id, a.tenant_id, a.patient_id, a.status, a.rule, (a.xmax = 0) AS opened
)
SELECT id, opened, pg_notify(%(channel)s, json_build_object(
        'alert_id', id, 'tenant_id', tenant_id, 'patient_id', patient_id,
        'status', status, 'rule', rule,
        'event', CASE WHEN opened THEN 'opened' ELSE 'updated' END)::text)
FROM up
"""

_RESOLVE = """
WITH c AS (
    SELECT * FROM unnest(%(patient_id)s::uuid[], %(rule)s::text[], %(note)s::text[],
                         %(needs_ack)s::bool[], %(after)s::timestamptz[])
        AS c(patient_id, rule, note, needs_ack, after)
), done AS (
    UPDATE alerts AS a SET
        status = 'resolved', resolved_by = %(by)s, resolved_at = now(),
        resolution_note = c.note, auto_resolved = true
    FROM c
    WHERE a.patient_id = c.patient_id AND a.rule = c.rule AND a.status <> 'resolved'
      AND (NOT c.needs_ack OR a.status = 'acknowledged')
      AND (c.after IS NULL OR a.last_measured_at < c.after)
    RETURNING a.id, a.tenant_id, a.patient_id, a.rule
)
SELECT id, pg_notify(%(channel)s, json_build_object(
        'alert_id', id, 'tenant_id', tenant_id, 'patient_id', patient_id,
        'status', 'resolved', 'rule', rule, 'event', 'resolved')::text)
FROM done
"""

_ACTIVE = (
    "SELECT patient_id, rule FROM alerts WHERE patient_id = ANY(%(patients)b)"
    " AND status <> 'resolved'"
)

#: Who resolves an alert whose condition cleared (alerts.resolved_by).
AUTO_RESOLVER = "hemhub"


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
        groups.setdefault((f.patient_id, f.rule), []).append(f)
    names = (
        "tenant_id patient_id rule rule_version severity reason last_reason first_key"
        " last_key measured_at last_measured_at late count threshold_set_id"
    ).split()
    cols: dict[str, list[Any]] = {k: [] for k in names}
    for (patient_id, rule_name), group in groups.items():
        group.sort(key=lambda f: (f.measured_at, f.reading_key or ""))
        first, last = group[0], group[-1]
        worst = max(group, key=lambda f: SEVERITY_RANK[f.severity])
        row = (
            first.tenant_id,
            patient_id,
            rule_name,
            first.version,
            str(worst.severity),
            first.reason,
            last.reason,
            first.reading_key,
            last.reading_key,
            first.measured_at,
            last.measured_at,
            any(f.late for f in group),
            sum(f.counts for f in group),
            first.threshold_set_id,
        )
        for name, value in zip(names, row, strict=True):
            cols[name].append(value)
    rows = conn.execute(_UPSERT, {**cols, "channel": NOTIFY_CHANNEL}).fetchall()
    touched = tuple((UUID(str(r[0])), "opened" if r[1] else "updated") for r in rows)
    opened = sum(1 for _, e in touched if e == "opened")
    return AlertOutcome(opened=opened, updated=len(touched) - opened, alerts=touched)


_CLEARABLE = (
    "SELECT patient_id, rule FROM alerts WHERE patient_id = ANY(%(patients)b)"
    " AND (status = 'acknowledged' OR (status = 'open' AND rule <> ALL(%(needs_ack)s)))"
)


def clearable_rules(
    conn: Conn, patient_ids: Iterable[UUID], needs_ack: Iterable[str]
) -> dict[UUID, set[str]]:
    """The rules of each resident's alerts that a clear can resolve now: acknowledged
    ones, and open ones of rules that do not wait for an acknowledgement (`needs_ack`
    names those that do, see `Clear.needs_ack`)."""
    params = {"patients": list(patient_ids), "needs_ack": list(needs_ack)}
    return _rules_by_patient(conn, _CLEARABLE, params)


def active_rules(conn: Conn, patient_ids: Iterable[UUID]) -> dict[UUID, set[str]]:
    """The rules of each resident's active (open or acknowledged) alerts: one query on
    the partial index alerts_one_active."""
    return _rules_by_patient(conn, _ACTIVE, {"patients": list(patient_ids)})


def _rules_by_patient(conn: Conn, query: str, params: dict[str, Any]) -> dict[UUID, set[str]]:
    """Rows (patient_id, rule) -> the rules of each patient."""
    out: dict[UUID, set[str]] = {}
    for patient_id, rule in conn.execute(query, params):
        out.setdefault(patient_id, set()).add(rule)
    return out


def resolve(conn: Conn, clears: Sequence[Clear]) -> AlertOutcome:
    """Resolve the active alerts whose condition cleared (auto_resolved, by AUTO_RESOLVER).

    Announced on NOTIFY with event "resolved", at commit like `apply`.
    """
    latest: dict[tuple[UUID, str], Clear] = {}
    for c in clears:  # per (patient, rule), the latest observation decides
        key = (c.patient_id, c.rule)
        old = latest.get(key)
        if old is None or (c.after is None or (old.after is not None and c.after > old.after)):
            latest[key] = c
    if not latest:
        return AlertOutcome(0, 0)
    # Nearly every in-range reading clears something that is not open: send only the
    # clears of active alerts, instead of thousands of rows that match nothing.
    active = active_rules(conn, {p for p, _ in latest})
    values = [c for (p, r), c in latest.items() if r in active.get(p, ())]
    if not values:
        return AlertOutcome(0, 0)
    rows = conn.execute(
        _RESOLVE,
        {
            "patient_id": [c.patient_id for c in values],
            "rule": [c.rule for c in values],
            "note": [c.note for c in values],
            "needs_ack": [c.needs_ack for c in values],
            "after": [c.after for c in values],
            "by": AUTO_RESOLVER,
            "channel": NOTIFY_CHANNEL,
        },
    ).fetchall()
    return AlertOutcome(0, 0, tuple((UUID(str(r[0])), "resolved") for r in rows), len(rows))
