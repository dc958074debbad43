"""The alert engine at store time: every newly stored, attributed reading is judged here.

Called by `ingest.pipeline.store` in the transaction that stored the readings. Each
reading is judged by the thresholds in force for its resident at its *measurement*
time (`thresholds.ThresholdBook.at`), so a late backlog reading meets the thresholds
of its own day and its alert is marked late. Dedupe happens before (reading_keys): a
replayed reading is never judged twice.

Per batch: one query for the thresholds of the residents in it, and one per kind of
series a rule needs (weights for the weight-gain trends, late doses, schedules),
only when the batch holds such readings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np

from hemhub.contract import MeasurementType
from ingest import alerts, thresholds
from ingest.alerts import AlertOutcome, Candidate, Clear, Conn, Finding, _fmt_number, _fmt_time
from ingest.rules import (
    LATE_KINDS,
    RANGE_SPECS,
    WEIGHT_LOINC,
    Judged,
    Series,
    convert,
    counts_within,
    device_flag_reason,
    event_kind,
    finding,
    flag_rules_of,
    flags_within,
    has_value,
    judge_reading,
    metric_value,
    rise_at,
    weight_gain_reason,
)
from ingest.thresholds import Effective, ThresholdBook, WeightGain

WEIGHTS_SQL = """
SELECT r.patient_id, r.measured_at, (q->>'value')::float8, q->>'unit'
FROM readings r CROSS JOIN LATERAL jsonb_array_elements(r."values") q
WHERE r.patient_id = ANY(%(patients)b) AND r.measurement_type = 'body_weight'
  AND r.measured_at >= %(since)s AND r.measured_at <= %(until)s
  AND q->>'loinc' = %(loinc)s AND q->>'value' IS NOT NULL
ORDER BY r.patient_id, r.measured_at, r.idempotency_key
"""

LATE_DOSES_SQL = """
SELECT patient_id, measured_at, 1.0 FROM readings
WHERE patient_id = ANY(%(patients)b) AND measurement_type = 'medication_event'
  AND event->>'kind' = ANY(%(kinds)s)
  AND measured_at > %(since)s AND measured_at <= %(until)s
ORDER BY patient_id, measured_at
"""

SCHEDULES_SQL = """
SELECT patient_id, measurement_type, every FROM monitoring_schedules
WHERE active AND patient_id = ANY(%(patients)b)
"""


def load_series(conn: Conn, sql: str, params: dict[str, Any]) -> dict[UUID, Series]:
    """Rows (patient, time, value[, unit]) ordered by patient and time -> Series per patient."""
    raw: dict[UUID, tuple[list[datetime], list[float]]] = {}
    for patient_id, at, value, *unit in conn.execute(sql, params).fetchall():
        times, values = raw.setdefault(UUID(str(patient_id)), ([], []))
        times.append(at)
        values.append(convert(value, unit[0]) if unit else value)
    return {p: Series(t, np.array(v, dtype=np.float64)) for p, (t, v) in raw.items()}


def load_weights(
    conn: Conn, patients: Iterable[UUID], since: datetime, until: datetime
) -> dict[UUID, Series]:
    params = {"patients": list(patients), "since": since, "until": until, "loinc": WEIGHT_LOINC}
    return load_series(conn, WEIGHTS_SQL, params)


def load_late_doses(
    conn: Conn, patients: Iterable[UUID], since: datetime, until: datetime
) -> dict[UUID, Series]:
    params = {"patients": list(patients), "since": since, "until": until, "kinds": list(LATE_KINDS)}
    return load_series(conn, LATE_DOSES_SQL, params)


def judge_weight_trend(
    series: Series | None, at: datetime, eff: Effective, patient_id: UUID
) -> tuple[list[tuple[str, Effective, alerts.Severity, str]], list[Clear]]:
    """The weight-gain trends of `eff` at instant `at`: (rule, eff, severity, reason) that
    fire, and clears (clinical) for those that do not."""
    fired: list[tuple[str, Effective, alerts.Severity, str]] = []
    clears: list[Clear] = []
    for name, trend in eff.thresholds.trends.items():
        if not trend.enabled:
            continue
        window = trend.days * 86400.0
        found = (
            None
            if series is None
            else rise_at(at.timestamp(), series.seconds, series.values, window)
        )
        if series is not None and found is not None:
            low, new = found
            gain = float(series.values[new] - series.values[low])
            if gain > trend.kg:  # "more than 2 kg in 3 days" (ESC)
                pair_low = (series.at[low], float(series.values[low]))
                pair_new = (series.at[new], float(series.values[new]))
                reason = weight_gain_reason(gain, trend.days, trend.kg, pair_low, pair_new)
                fired.append((name, eff, trend.severity, reason))
                continue
        note = (
            f"weight gain not above {_fmt_number(trend.kg)} kg within"
            f" {_fmt_number(trend.days)} days at {_fmt_time(at)}"
        )
        clears.append(Clear(name, patient_id, note, True, at))
    return fired, clears


def enabled_trends(eff: Effective) -> list[WeightGain]:
    return [t for t in eff.thresholds.trends.values() if t.enabled]


def _weight_trends(conn: Conn, book: ThresholdBook, candidates: Sequence[Candidate]) -> Judged:
    new = [
        (c, book.at(c.patient_id, c.reading.measured_at))
        for c in candidates
        if c.reading.measurement_type == MeasurementType.BODY_WEIGHT
        and metric_value(c.reading, "weight") is not None
    ]
    new = [(c, eff) for c, eff in new if enabled_trends(eff)]
    if not new:
        return [], []
    longest = max(t.days for _, eff in new for t in enabled_trends(eff))
    times = [c.reading.measured_at for c, _ in new]
    series = load_weights(
        conn, {c.patient_id for c, _ in new}, min(times) - timedelta(days=longest), max(times)
    )
    findings: list[Finding] = []
    clears: list[Clear] = []
    for c, eff in new:
        fired, cl = judge_weight_trend(
            series.get(c.patient_id), c.reading.measured_at, eff, c.patient_id
        )
        clears += cl
        findings += [finding(c, e, name, sev, reason) for name, e, sev, reason in fired]
    return findings, clears


def late_doses_reason(count: int, days: float, at: datetime) -> str:
    return f"{count} late doses within {_fmt_number(days)} days (latest at {_fmt_time(at)})"


def _late_doses(conn: Conn, book: ThresholdBook, candidates: Sequence[Candidate]) -> Judged:
    new = [
        (c, book.at(c.patient_id, c.reading.measured_at))
        for c in candidates
        if c.reading.event is not None and event_kind(c.reading.event.kind) == "dose_late"
    ]
    if not new:
        return [], []
    longest = max(eff.thresholds.medication.late_days for _, eff in new)
    times = [c.reading.measured_at for c, _ in new]
    series = load_late_doses(
        conn, {c.patient_id for c, _ in new}, min(times) - timedelta(days=longest), max(times)
    )
    findings: list[Finding] = []
    for c, eff in new:
        med = eff.thresholds.medication
        s = series.get(c.patient_id)
        at = c.reading.measured_at
        if s is None:
            continue
        [count] = counts_within(s.seconds, np.array([at.timestamp()]), med.late_days * 86400.0)
        if count >= med.late_count:
            reason = late_doses_reason(int(count), med.late_days, at)
            findings.append(finding(c, eff, "medication_doses_late", med.late_severity, reason))
    return findings, []


FLAGGED_SQL = """
SELECT patient_id, measured_at, status FROM readings
WHERE patient_id = ANY(%(patients)b) AND status && %(flags)s::text[]
  AND measured_at > %(since)s AND measured_at <= %(until)s
ORDER BY patient_id, measured_at
"""


def load_flagged(
    conn: Conn, patients: Iterable[UUID], flags: Iterable[str], since: datetime, until: datetime
) -> dict[UUID, list[tuple[datetime, list[str]]]]:
    """Per resident, (measured_at, status) of the readings carrying one of `flags`."""
    params = {
        "patients": list(patients),
        "flags": sorted(set(flags)),
        "since": since,
        "until": until,
    }
    out: dict[UUID, list[tuple[datetime, list[str]]]] = {}
    for patient_id, at, status in conn.execute(FLAGGED_SQL, params).fetchall():
        out.setdefault(UUID(str(patient_id)), []).append((at, list(status)))
    return out


def _device_flags(conn: Conn, book: ThresholdBook, candidates: Sequence[Candidate]) -> Judged:
    """Device-reported clinical flags (irregular pulse, ...): each flagged reading fires
    its flag rule once `count` flagged readings fall within the rule's window."""
    new = []
    for c in candidates:
        if not c.reading.status:
            continue
        eff = book.at(c.patient_id, c.reading.measured_at)
        rules = flag_rules_of(c.reading, eff.thresholds)
        if rules:
            new.append((c, eff, rules))
    if not new:
        return [], []
    longest = max(rule.days for _, _, rules in new for _, rule in rules)
    times = [c.reading.measured_at for c, _, _ in new]
    flags = {f for _, _, rules in new for _, rule in rules for f in rule.flags}
    since = min(times) - timedelta(days=longest)
    flagged = load_flagged(conn, {c.patient_id for c, _, _ in new}, flags, since, max(times))
    findings: list[Finding] = []
    for c, eff, rules in new:
        at = c.reading.measured_at
        seen = flagged.get(c.patient_id, [])
        for name, rule in rules:
            n = flags_within(seen, rule, at)
            if n >= rule.count:
                reason = device_flag_reason(c.reading, rule, n)
                findings.append(finding(c, eff, name, rule.severity, reason))
    return findings, []


def _missing_data_cleared(
    conn: Conn,
    book: ThresholdBook,
    candidates: Sequence[Candidate],
    now: datetime,
    patients: Collection[UUID],
) -> list[Clear]:
    """A valid measurement recent enough for the resident's schedule ends their
    missing-data alert of that kind (the scheduled run would find nothing missing).
    `patients`: the candidates' residents."""
    rows = conn.execute(SCHEDULES_SQL, {"patients": list(patients)}).fetchall()
    if not rows:
        return []
    every = {(UUID(str(p)), t): e for p, t, e in rows}
    clears: list[Clear] = []
    for c in candidates:
        period = every.get((c.patient_id, str(c.reading.measurement_type)))
        if period is None or not has_value(c.reading):
            continue
        grace = timedelta(hours=book.at(c.patient_id, now).thresholds.missing_data.grace_hours)
        if c.reading.measured_at >= now - period - grace:
            note = f"{c.reading.measurement_type} measured at {_fmt_time(c.reading.measured_at)}"
            clears.append(
                Clear(missing_rule(str(c.reading.measurement_type)), c.patient_id, note, False)
            )
    return clears


def missing_rule(measurement_type: str) -> str:
    return f"missing_{measurement_type}"


#: Of the given residents, the deactivated ones (registry.deactivate_patient).
DEACTIVATED_SQL = (
    "SELECT id FROM patients WHERE id = ANY(%(patients)b) AND deactivated_at IS NOT NULL"
)


def _of_active_residents(conn: Conn, candidates: Sequence[Candidate]) -> Sequence[Candidate]:
    """The candidates but those of deactivated residents: a reading measured before the
    deactivation that arrives after it is kept (history), never judged (no new alerts)."""
    if not candidates:
        return candidates
    patients = list({c.patient_id for c in candidates})
    gone = {
        UUID(str(r[0])) for r in conn.execute(DEACTIVATED_SQL, {"patients": patients}).fetchall()
    }
    return [c for c in candidates if c.patient_id not in gone] if gone else candidates


def evaluate_stored(
    conn: Conn,
    candidates: Sequence[Candidate],
    static_rules: Sequence[alerts.Rule] = alerts.DEFAULT_RULES,
    *,
    now: datetime | None = None,
) -> AlertOutcome:
    """Judge newly stored, attributed readings; open, update and resolve their alerts."""
    candidates = _of_active_residents(conn, candidates)
    if not candidates:
        return AlertOutcome(0, 0)
    now = now or datetime.now(UTC)
    patients = {c.patient_id for c in candidates}
    book = thresholds.load(conn, patients)
    findings: list[Finding] = alerts.evaluate(candidates, static_rules)
    clears: list[Clear] = []
    # What each resident's readings may clear: the rules of their alerts that a clear
    # can resolve now (a range alert only once acknowledged), and those this batch fires
    # that resolve without acknowledgement, judged in measurement order so that a later
    # reading of the batch can clear what an earlier one opened.
    clearable = alerts.clearable_rules(conn, patients, RANGE_SPECS)
    for c in sorted(candidates, key=lambda c: c.reading.measured_at):
        rules = clearable.setdefault(c.patient_id, set())
        f, cl = judge_reading(c, book.at(c.patient_id, c.reading.measured_at), rules)
        if f:
            findings += f
            rules.update(x.rule for x in f if x.rule not in RANGE_SPECS)
        clears += cl
    for f, cl in (
        _weight_trends(conn, book, candidates),
        _late_doses(conn, book, candidates),
        _device_flags(conn, book, candidates),
    ):
        findings += f
        clears += cl
    clears += _missing_data_cleared(conn, book, candidates, now, patients)
    return alerts.apply(conn, findings) + alerts.resolve(conn, clears)
