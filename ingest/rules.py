"""The rules, as pure functions: what one reading, or one series of readings, amounts to.

Nothing here touches the database: `ingest.engine` (store time) and `ingest.schedule`
(the scheduled run) fetch what the rules need and write what they find. A rule yields
`Finding`s (fire: open or repeat an alert) and `Clear`s (the condition is gone: resolve
the active alert, see `alerts.Clear` for when that happens). Rule names are what
`alerts.rule` holds; one active alert per (resident, rule name).

- range rules (`thresholds.Ranges`): per reading, the most severe tier that fires;
- sensor status: the reading carries a flag that makes it doubtful (cuff too loose,
  low perfusion): `sensor_status_<measurement type>`;
- medication events: missed dose, refill low, robot error, tamper, low battery;
- trends (numpy): weight gain over days, late doses within days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from hemhub.contract import MeasurementType, Reading
from ingest.alerts import (
    MMHG_PER_KPA,
    SEVERITY_RANK,
    Candidate,
    Clear,
    Finding,
    Severity,
    _fmt_number,
    _fmt_time,
    finding_of,
)
from ingest.thresholds import DeviceFlag, Effective, Metric, Thresholds

MT = MeasurementType

#: LOINC codes of each metric (the first match in a reading's values is used).
METRIC_LOINC: dict[Metric, tuple[str, ...]] = {
    "systolic": ("8480-6",),
    "diastolic": ("8462-4",),
    "pulse": ("8867-4",),
    "spo2": ("2708-6", "59408-5"),
    "glucose": ("15074-8", "2339-0", "14743-9", "2345-7"),
    "weight": ("29463-7",),
}
#: Unit -> factor to the unit thresholds are in (mm[Hg], mmol/L, kg).
UNIT_FACTOR: dict[str, float] = {
    "kPa": MMHG_PER_KPA,
    "mg/dL": 1 / 18.016,
    "[lb_av]": 0.45359237,
    "g": 0.001,
}

WEIGHT_LOINC = "29463-7"


def convert(value: float, unit: str) -> float:
    return value * UNIT_FACTOR.get(unit, 1.0)


def metric_value(reading: Reading, metric: Metric) -> float | None:
    """The metric in threshold units, or None when absent or a special value."""
    return reading_metrics(reading).get(metric)


#: LOINC code -> the metric it measures (METRIC_LOINC inverted).
LOINC_METRIC: dict[str, Metric] = {code: m for m, codes in METRIC_LOINC.items() for code in codes}


def reading_metrics(reading: Reading) -> dict[Metric, float | None]:
    """Every metric of the reading in threshold units, in one pass: what `metric_value`
    gives for each (the first value with one of the metric's codes; None if special)."""
    out: dict[Metric, float | None] = {}
    for q in reading.values:
        m = LOINC_METRIC.get(q.loinc)
        if m is not None and m not in out:
            out[m] = None if q.value is None else convert(q.value, q.unit)
            if m == "glucose" and q.unit == "mg/dL":
                out["glucose_mg_dl"] = q.value  # judged by the mg/dL limit where a tier has one
    return out


#: A metric in a second unit -> the metric it stands for: a tier with a limit in that
#: unit judges a reading sent in it by that limit, not by the converted value (ADA's
#: < 70 mg/dL and < 3.9 mmol/L disagree between 69.97 and 70.26 mg/dL).
UNIT_METRICS: dict[Metric, Metric] = {"glucose_mg_dl": "glucose"}


def has_value(reading: Reading) -> bool:
    """A measurement (some value is a number) or an event: not a device-error reading."""
    return reading.event is not None or any(q.value is not None for q in reading.values)


@dataclass(frozen=True)
class RangeSpec:
    types: tuple[MeasurementType, ...]
    metrics: tuple[Metric, ...]
    above: bool
    label: str
    unit: str
    #: The metrics in a second unit (UNIT_METRICS) and the unit they are in.
    alt: tuple[Metric, ...] = ()
    alt_unit: str = ""


RANGE_SPECS: dict[str, RangeSpec] = {
    "blood_pressure_high": RangeSpec(
        (MT.BLOOD_PRESSURE,), ("systolic", "diastolic"), True, "BP", "mm[Hg]"
    ),
    "blood_pressure_low": RangeSpec(
        (MT.BLOOD_PRESSURE,), ("systolic", "diastolic"), False, "BP", "mm[Hg]"
    ),
    "pulse_high": RangeSpec(
        (MT.BLOOD_PRESSURE, MT.PULSE_OXIMETRY), ("pulse",), True, "Pulse", "/min"
    ),
    "pulse_low": RangeSpec(
        (MT.BLOOD_PRESSURE, MT.PULSE_OXIMETRY), ("pulse",), False, "Pulse", "/min"
    ),
    "spo2_low": RangeSpec((MT.PULSE_OXIMETRY,), ("spo2",), False, "SpO2", "%"),
    "glucose_high": RangeSpec(
        (MT.GLUCOSE,), ("glucose",), True, "Glucose", "mmol/L", ("glucose_mg_dl",), "mg/dL"
    ),
    "glucose_low": RangeSpec(
        (MT.GLUCOSE,), ("glucose",), False, "Glucose", "mmol/L", ("glucose_mg_dl",), "mg/dL"
    ),
    "weight_high": RangeSpec((MT.BODY_WEIGHT,), ("weight",), True, "Weight", "kg"),
    "weight_low": RangeSpec((MT.BODY_WEIGHT,), ("weight",), False, "Weight", "kg"),
}


def finding(c: Candidate, eff: Effective, rule: str, severity: Severity, reason: str) -> Finding:
    """The finding of a threshold-driven rule: records the version that judged it."""
    return finding_of(c, rule, eff.version, severity, reason, eff.set_id)


Judged = tuple[list[Finding], list[Clear]]


#: Which rules a reading may clear for its resident: their active alerts' rules, or
#: None for every rule. Clears of alerts that are not open are no-ops, and at store
#: time nearly every reading is in range: knowing the open ones spares their notes.
Clearable = AbstractSet[str] | None


def _may_clear(rule: str, clearable: Clearable) -> bool:
    return clearable is None or rule in clearable


def _in_alt_unit(spec: RangeSpec, values: dict[Metric, float | None]) -> bool:
    """Whether the reading came in the spec's second unit (glucose in mg/dL)."""
    return any(values.get(m) is not None for m in spec.alt)


def _range_at(spec: RangeSpec, values: dict[Metric, float | None], r: Reading) -> str:
    """What a range rule saw, for reasons and notes: "BP 185/95 mm[Hg] at <time>", in
    the unit the reading came in."""
    alt = _in_alt_unit(spec, values)
    shown = "/".join(
        "?" if values.get(m) is None else _fmt_number(values[m])  # type: ignore[arg-type]
        for m in (spec.alt if alt else spec.metrics)
    )
    unit = spec.alt_unit if alt else spec.unit
    return f"{spec.label} {shown} {unit} at {_fmt_time(r.measured_at)}"


def _crosses(limits: dict[Metric, float], values: dict[Metric, float | None], above: bool) -> bool:
    """Whether some value crosses its limit in one tier. A value in a second unit is
    judged by the tier's limit in that unit, and then not by the converted one."""
    for m, limit in limits.items():
        v = values.get(m)
        if v is None:
            continue
        shadow = [a for a, base in UNIT_METRICS.items() if base == m and a in limits]
        if any(values.get(a) is not None for a in shadow):
            continue
        if v >= limit if above else v < limit:
            return True
    return False


@dataclass(frozen=True)
class _RangeRule:
    """A range rule of one threshold document, ready to judge: its tiers most severe
    first, and the metrics any tier judges."""

    name: str
    spec: RangeSpec
    tiers: tuple[tuple[Severity, dict[Metric, float]], ...]
    #: The metrics (in threshold units) a clearing reading must carry.
    judged: frozenset[Metric]
    #: Per metric, the limit of the least severe tier that judges it: a value on the
    #: safe side of it fires no tier (nearly every reading, so judged first).
    mildest: tuple[tuple[Metric, float], ...]

    def fires(
        self, values: dict[Metric, float | None]
    ) -> tuple[Severity, dict[Metric, float]] | None:
        """The most severe tier that some value crosses, or None."""
        above = self.spec.above
        for m, limit in self.mildest:
            v = values.get(m)
            if v is not None and (v >= limit if above else v < limit):
                break
        else:
            return None
        for tier in self.tiers:
            if _crosses(tier[1], values, above):
                return tier
        return None


_RangeTable = dict[MeasurementType, tuple[_RangeRule, ...]]
#: Per measurement type, LOINC code -> the band (low, high) of values, in threshold
#: units, that fire none of the type's range rules: low <= value < high.
_QuietBands = dict[MeasurementType, dict[str, tuple[float, float]]]


@dataclass(frozen=True)
class _Compiled:
    """A threshold document's range rules, compiled once (see `_compiled`)."""

    #: The document (held, so that its id is not reused while cached).
    doc: Thresholds
    rules: _RangeTable
    quiet: _QuietBands


#: id(Thresholds) -> its compiled rules. Bounded, as overrides load per batch.
_RANGE_TABLES: dict[int, _Compiled] = {}
_RANGE_TABLES_MAX = 4096


def _compiled(doc: Thresholds) -> _Compiled:
    """The range rules of a threshold document per measurement type, and their quiet
    bands, built once per document (every reading is judged; the programme profiles
    are shared)."""
    cached = _RANGE_TABLES.get(id(doc))
    if cached is not None and cached.doc is doc:
        return cached
    table: dict[MeasurementType, list[_RangeRule]] = {}
    for name, tiers in doc.ranges.items():
        if not tiers:
            continue
        spec = RANGE_SPECS[name]
        ordered = tuple(
            (sev, dict(tiers[sev]))
            for sev in sorted(tiers, key=SEVERITY_RANK.__getitem__, reverse=True)
        )
        limited = frozenset(m for limits in tiers.values() for m in limits)
        judged = frozenset(m for m in limited if m not in UNIT_METRICS)
        pick = min if spec.above else max
        mildest = tuple(
            (m, pick(limits[m] for limits in tiers.values() if m in limits)) for m in limited
        )
        for mt in spec.types:
            table.setdefault(mt, []).append(_RangeRule(name, spec, ordered, judged, mildest))
    quiet: _QuietBands = {}
    for mt, rules in table.items():
        bands: dict[Metric, tuple[float, float]] = {}
        for rule in rules:
            for m, limit in rule.mildest:
                low, high = bands.get(m, (-math.inf, math.inf))
                bands[m] = (low, min(high, limit)) if rule.spec.above else (max(low, limit), high)
        for alt, base in UNIT_METRICS.items():  # folded into its metric's band, converted
            if alt in bands:
                low, high = bands.pop(alt)
                b_low, b_high = bands.get(base, (-math.inf, math.inf))
                bands[base] = (
                    max(b_low, convert(low, "mg/dL")),
                    min(b_high, convert(high, "mg/dL")),
                )
        quiet[mt] = {code: band for m, band in bands.items() for code in METRIC_LOINC[m]}
    compiled = _Compiled(doc, {mt: tuple(rules) for mt, rules in table.items()}, quiet)
    if len(_RANGE_TABLES) >= _RANGE_TABLES_MAX:
        _RANGE_TABLES.clear()
    _RANGE_TABLES[id(doc)] = compiled
    return compiled


def _range_table(doc: Thresholds) -> _RangeTable:
    """The range rules of a threshold document per measurement type (see `_compiled`)."""
    return _compiled(doc).rules


def is_quiet(r: Reading, eff: Effective) -> bool:
    """True when the reading fires none of `judge_reading`'s rules: a measurement with
    every value inside the bands that no range rule fires on, and no sensor flag. Most
    readings are; for a resident with nothing to clear they need no further judging.
    (Checks every value, not only the first of each metric that the rules judge: a
    value outside the band only sends the reading the long way.)"""
    if r.measurement_type == MT.MEDICATION_EVENT:
        return False
    bands = _compiled(eff.thresholds).quiet.get(r.measurement_type)
    if bands:
        for q in r.values:
            band = bands.get(q.loinc)
            if band is not None and q.value is not None:
                if not band[0] <= convert(q.value, q.unit) < band[1]:
                    return False
    flags = eff.thresholds.technical.sensor_flags
    return not any(f in flags for f in r.status)


def _judge_ranges(c: Candidate, eff: Effective, clearable: Clearable = None) -> Judged:
    findings: list[Finding] = []
    clears: list[Clear] = []
    r = c.reading
    rules = _range_table(eff.thresholds).get(r.measurement_type)
    if not rules:
        return findings, clears
    metrics = reading_metrics(r)
    for rule in rules:
        spec = rule.spec
        values = {m: metrics.get(m) for m in (*spec.metrics, *spec.alt)}
        fired = rule.fires(values)
        if fired is not None:
            severity, limits = fired
            word = "threshold" if spec.above else "lower limit"
            shown = spec.metrics
            if _in_alt_unit(spec, values) and any(m in limits for m in spec.alt):
                shown = spec.alt
            lim = "/".join(_fmt_number(limits[m]) if m in limits else "-" for m in shown)
            findings.append(
                finding(c, eff, rule.name, severity, f"{_range_at(spec, values, r)} ({word} {lim})")
            )
            continue
        if not _may_clear(rule.name, clearable):
            continue
        if all(values.get(m) is not None for m in rule.judged):  # a partial reading clears nothing
            clears.append(
                Clear(
                    rule.name,
                    c.patient_id,
                    f"back in range: {_range_at(spec, values, r)}",
                    True,
                    r.measured_at,
                )
            )
    return findings, clears


def _judge_sensor(c: Candidate, eff: Effective, clearable: Clearable = None) -> Judged:
    r = c.reading
    rule = f"sensor_status_{r.measurement_type}"
    tech = eff.thresholds.technical
    flags = [f for f in r.status if f in tech.sensor_flags]
    if flags:
        reason = (
            f"{r.measurement_type} reading at {_fmt_time(r.measured_at)} flagged: "
            + ", ".join(flags)
        )
        return [finding(c, eff, rule, tech.sensor_severity, reason)], []
    if not _may_clear(rule, clearable) or not has_value(r):
        return [], []
    note = f"unflagged {r.measurement_type} reading at {_fmt_time(r.measured_at)}"
    return [], [Clear(rule, c.patient_id, note, False, r.measured_at)]


#: Short event kinds (hemhub.contract.DeviceEvent docs) -> the dispenser profile's names.
_KIND_ALIASES = {
    "due": "dose_due",
    "dispensed": "dose_dispensed",
    "taken": "dose_taken",
    "late": "dose_late",
    "missed": "dose_missed",
}
LATE_KINDS = ("dose_late", "late")


def event_kind(kind: str) -> str:
    return _KIND_ALIASES.get(kind, kind)


def _judge_medication(c: Candidate, eff: Effective) -> Judged:
    r = c.reading
    event = r.event
    if event is None:
        return [], []
    med = eff.thresholds.medication
    kind = event_kind(event.kind)
    dose = "" if event.dose_id is None else f" {event.dose_id}"
    slot = "" if event.slot is None else f" (slot {event.slot})"
    at = _fmt_time(r.measured_at)

    def fire(rule: str, severity: Severity, reason: str) -> Judged:
        return [finding(c, eff, rule, severity, reason)], []

    def clear(rule: str, note: str) -> Judged:
        return [], [Clear(rule, c.patient_id, f"{note} at {at}", False, r.measured_at)]

    if kind == "dose_missed":
        return fire(
            "medication_missed_dose",
            med.missed_severity,
            f"dose{dose}{slot} missed at {at}: locked away, contact the resident",
        )
    if kind == "refill_low":
        return fire("medication_refill_low", med.refill_low_severity, f"refill low at {at}")
    if kind == "refilled":
        return clear("medication_refill_low", "refilled")
    if kind in ("jam", "device_error"):
        return fire(
            "medication_robot_error",
            med.robot_error_severity,
            f"medication robot {kind.replace('_', ' ')} at {at}: cannot dispense",
        )
    if kind in ("dose_dispensed", "dose_taken"):
        return clear("medication_robot_error", f"dose{dose} {kind.removeprefix('dose_')}")
    if kind == "tamper":
        return fire(
            "medication_tamper", med.tamper_severity, f"medication robot tampered with at {at}"
        )
    if kind == "low_battery":
        return fire(
            "dispenser_battery_low",
            eff.thresholds.technical.battery_severity,
            f"medication robot battery low at {at}",
        )
    if event.needs_staff_attention and kind not in ("dose_late",):
        return fire("medication_attention", med.attention_severity, f"{kind} at {at}: needs staff")
    return [], []


def judge_reading(c: Candidate, eff: Effective, clearable: Clearable = None) -> Judged:
    """Range, sensor-status and medication-event rules on one attributed reading; clears
    only for the rules in `clearable` (None: every rule)."""
    if clearable is not None and not clearable and is_quiet(c.reading, eff):
        return [], []  # the common case: nothing fires, nothing to clear
    findings: list[Finding] = []
    clears: list[Clear] = []
    if c.reading.measurement_type == MT.MEDICATION_EVENT:
        parts = [_judge_medication(c, eff)]
    else:
        parts = [_judge_ranges(c, eff, clearable), _judge_sensor(c, eff, clearable)]
    for f, cl in parts:
        findings += f
        clears += cl
    return findings, clears


# --- device-reported clinical flags ---------------------------------------------------


def flag_rules_of(r: Reading, doc: Thresholds) -> list[tuple[str, DeviceFlag]]:
    """The device-flag rules (name, rule) a reading's status flags fire."""
    return [(name, rule) for name, rule in doc.flags.items() if set(rule.flags) & set(r.status)]


def flags_within(
    flagged: Sequence[tuple[datetime, Sequence[str]]], rule: DeviceFlag, at: datetime
) -> int:
    """How many of a resident's flagged readings (measured_at, status) carry one of the
    rule's flags within its window (at - days, at]."""
    since = at - days(rule.days)
    return sum(1 for t, status in flagged if since < t <= at and set(rule.flags) & set(status))


def device_flag_reason(r: Reading, rule: DeviceFlag, count: int) -> str:
    shown = ", ".join(f for f in r.status if f in rule.flags)
    return (
        f"{r.measurement_type} reading at {_fmt_time(r.measured_at)} flagged {shown}"
        f" ({count} within {_fmt_number(rule.days)} days)"
    )


def flags_note(rule: DeviceFlag, count: int, at: datetime) -> str:
    return (
        f"{count} flagged readings within {_fmt_number(rule.days)} days at {_fmt_time(at)}"
        f" (fires at {rule.count})"
    )


# --- series (numpy) -------------------------------------------------------------------

FloatArray = npt.NDArray[np.float64]


def rise_at(
    at_s: float, times: FloatArray, values: FloatArray, window_s: float
) -> tuple[int, int] | None:
    """The rise at instant `at_s` (all in seconds; times ascending): (index of the lowest
    sample in [at_s - window_s, at_s], index of the newest one), or None when no sample."""
    inside = np.flatnonzero((times >= at_s - window_s) & (times <= at_s))
    if inside.size == 0:
        return None
    low = int(inside[np.argmin(values[inside])])  # first of equal lows: the oldest
    return low, int(inside[-1])


def counts_within(times: FloatArray, at: FloatArray, window_s: float) -> npt.NDArray[np.intp]:
    """How many of `times` (ascending) fall in (at - window_s, at], for each `at`."""
    upper = np.searchsorted(times, at, side="right")
    lower = np.searchsorted(times, at - window_s, side="right")
    return upper - lower


@dataclass(frozen=True)
class Series:
    """One resident's samples of one kind, ascending in time."""

    at: Sequence[datetime]
    values: FloatArray

    @property
    def seconds(self) -> FloatArray:
        return np.array([t.timestamp() for t in self.at], dtype=np.float64)


def weight_gain_reason(
    gain: float, days: float, kg: float, low: tuple[datetime, float], high: tuple[datetime, float]
) -> str:
    return (
        f"weight +{_fmt_number(gain)} kg within {_fmt_number(days)} days:"
        f" {_fmt_number(low[1])} kg at {_fmt_time(low[0])} -> {_fmt_number(high[1])} kg at"
        f" {_fmt_time(high[0])} (more than {_fmt_number(kg)} kg in {_fmt_number(days)} days)"
    )


def days(n: float) -> timedelta:
    return timedelta(days=n)
