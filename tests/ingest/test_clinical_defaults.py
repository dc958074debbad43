"""The sourced clinical defaults (ingest/catalogue.py, docs/alerts.md): every row of the
docs table just inside and just outside its limit, in both units where a measurement
has two; every default rule has a source; a worse value never gets a milder severity;
SpO2 scales, weight trends, device flags and profile versions against the real engine."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemhub.contract import MeasurementType, Quantity, Reading
from ingest import catalogue, engine, programmes, thresholds
from ingest.alerts import MMHG_PER_KPA, SEVERITY_RANK, Candidate, Severity
from ingest.catalogue import DefaultRule
from ingest.rules import RANGE_SPECS, Series, flags_within, judge_reading
from ingest.thresholds import DeviceFlag, Effective
from tests.factories import bp_reading
from tests.ingest.factories import alerts_of
from tests.ingest.test_alert_rules import ack, by_rule, put, reading, resident

T0 = datetime(2026, 11, 24, 7, 2, tzinfo=UTC)
MT = MeasurementType
DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"

# --- readings with one metric set, the others normal ------------------------------------

NORMAL = {"systolic": 120.0, "diastolic": 80.0, "pulse": 70.0, "spo2": 97.0}


def bp(systolic: float, diastolic: float, pulse: float, unit: str = "mm[Hg]") -> Reading:
    r = bp_reading(120, 80, measured_at=T0)
    return r.model_copy(
        update={
            "values": [
                Quantity(name="systolic", loinc="8480-6", value=systolic, unit=unit),
                Quantity(name="diastolic", loinc="8462-4", value=diastolic, unit=unit),
                Quantity(name="pulse", loinc="8867-4", value=pulse, unit="/min"),
            ]
        }
    )


def oximetry(spo2: float, pulse: float = 70.0) -> Reading:
    return bp_reading(measured_at=T0).model_copy(
        update={
            "measurement_type": MT.PULSE_OXIMETRY,
            "values": [
                Quantity(name="oxygen_saturation", loinc="2708-6", value=spo2, unit="%"),
                Quantity(name="oxygen_saturation", loinc="59408-5", value=spo2, unit="%"),
                Quantity(name="pulse", loinc="8867-4", value=pulse, unit="/min"),
            ],
        }
    )


def glucose(value: float, unit: str) -> Reading:
    loinc = "2339-0" if unit == "mg/dL" else "15074-8"
    return bp_reading(measured_at=T0).model_copy(
        update={
            "measurement_type": MT.GLUCOSE,
            "values": [Quantity(name="glucose", loinc=loinc, value=value, unit=unit)],
        }
    )


def with_metric(metric: str, value: float, unit: str) -> Reading:
    """A reading whose `metric` is `value` (in `unit`) and whose other values are normal."""
    if metric in ("systolic", "diastolic"):
        v = dict(NORMAL)
        normal_kpa = unit == "kPa"
        sys_, dia = (v["systolic"], v["diastolic"])
        if normal_kpa:
            sys_, dia = sys_ / MMHG_PER_KPA, dia / MMHG_PER_KPA
        if metric == "systolic":
            sys_ = value
        else:
            dia = value
        return bp(sys_, dia, 70.0, unit)
    if metric == "pulse":
        return bp(120, 80, value)
    if metric == "spo2":
        return oximetry(value)
    return glucose(value, unit)


def severity_of(r: Reading, eff: Effective, rule: str) -> Severity | None:
    c = Candidate(r, uuid.uuid4(), "t", False)
    findings, _ = judge_reading(c, eff)
    found = [f.severity for f in findings if f.rule == rule]
    return found[0] if found else None


def rank(severity: Severity | None) -> int:
    return 0 if severity is None else SEVERITY_RANK[severity]


# --- one case per docs-table row, limit and unit -----------------------------------------


def boundary_cases() -> list[Any]:
    """(row, programme, metric, unit, outside value, inside value) for every range row."""
    cases = []
    for row in catalogue.rows("range"):
        above = RANGE_SPECS[row.rule].above
        for programme in programmes.programmes_of(row):
            for metric, limit in row.limits.items():
                if metric == "glucose_mg_dl":
                    units = [("mg/dL", limit, 0.1)]
                elif metric == "glucose":
                    units = [("mmol/L", limit, 0.01)]
                elif metric in ("systolic", "diastolic"):
                    units = [("mm[Hg]", limit, 0.1), ("kPa", limit / MMHG_PER_KPA, 0.01)]
                else:
                    units = [("%" if metric == "spo2" else "/min", limit, 0.1)]
                for unit, at, step in units:
                    # "high" fires at the limit itself, "low" just below it
                    outside, inside = (at, at - step) if above else (at - step, at)
                    if unit == "kPa":  # clear of the rounding of the conversion back
                        outside, inside = (
                            (at + step, at - step) if above else (at - step, at + step)
                        )
                    name = f"{row.rule}-{row.severity}-{programme}-{metric}-{unit}"
                    cases.append(
                        pytest.param(row, programme, metric, unit, outside, inside, id=name)
                    )
    return cases


@pytest.mark.parametrize(
    ("row", "programme", "metric", "unit", "outside", "inside"), boundary_cases()
)
def test_each_range_row_just_outside_and_just_inside(
    row: DefaultRule, programme: str, metric: str, unit: str, outside: float, inside: float
) -> None:
    eff = thresholds.programme_default(programme)
    assert severity_of(with_metric(metric, outside, unit), eff, row.rule) == row.severity
    milder = severity_of(with_metric(metric, inside, unit), eff, row.rule)
    assert rank(milder) < rank(row.severity)


def test_every_range_row_has_a_boundary_case_in_some_programme() -> None:
    tested = {
        (c.values[0].rule, c.values[0].severity, c.values[0].spo2_scale) for c in boundary_cases()
    }
    for row in catalogue.rows("range"):
        assert (row.rule, row.severity, row.spo2_scale) in tested, row


def test_glucose_is_judged_in_the_unit_the_meter_sends() -> None:
    """ADA: level 1 is *below* 70 mg/dL; 70 / 18.016 = 3.885 mmol/L would be below 3.9."""
    eff = thresholds.programme_default("diabetes")
    assert severity_of(glucose(70, "mg/dL"), eff, "glucose_low") is None
    assert severity_of(glucose(69, "mg/dL"), eff, "glucose_low") == Severity.HIGH
    assert severity_of(glucose(54, "mg/dL"), eff, "glucose_low") == Severity.HIGH
    assert severity_of(glucose(53, "mg/dL"), eff, "glucose_low") == Severity.CRITICAL
    assert severity_of(glucose(3.89, "mmol/L"), eff, "glucose_low") == Severity.HIGH
    c = Candidate(glucose(69, "mg/dL"), uuid.uuid4(), "t", False)
    [f], _ = judge_reading(c, eff)
    assert f.reason == "Glucose 69 mg/dL at 2026-11-24T07:02Z (lower limit 70)"
    c = Candidate(glucose(35, "mmol/L"), uuid.uuid4(), "t", False)
    [f], _ = judge_reading(c, eff)
    assert (f.severity, f.reason) == (
        Severity.CRITICAL,
        "Glucose 35 mmol/L at 2026-11-24T07:02Z (threshold 33.3)",
    )


def test_bp_crisis_is_worse_than_grade_3() -> None:
    eff = thresholds.programme_default("hypertension")
    assert severity_of(bp(214, 126, 70), eff, "blood_pressure_high") == Severity.CRITICAL
    assert severity_of(bp(180, 110, 70), eff, "blood_pressure_high") == Severity.HIGH
    assert severity_of(bp(165, 95, 70), eff, "blood_pressure_high") == Severity.MEDIUM
    # grade 2 is the hypertension programme's own tier
    other = thresholds.programme_default("diabetes")
    assert severity_of(bp(165, 95, 70), other, "blood_pressure_high") is None


def test_baseline_limits_hold_in_every_programme() -> None:
    """SpO2 85 % is an alert for anyone; so is a level 2 hypoglycaemia."""
    for programme in programmes.PROGRAMMES:
        eff = thresholds.programme_default(programme)
        assert rank(severity_of(oximetry(82), eff, "spo2_low")) >= rank(Severity.HIGH)
        assert severity_of(glucose(2.9, "mmol/L"), eff, "glucose_low") == Severity.CRITICAL
        assert severity_of(bp(85, 60, 70), eff, "blood_pressure_low") == Severity.HIGH


def test_copd_is_judged_on_news2_scale_2_and_a_resident_can_change_scale() -> None:
    copd = thresholds.programme_default("copd")
    assert copd.thresholds.spo2_scale == 2
    assert severity_of(oximetry(89), copd, "spo2_low") is None  # in the BTS target range
    assert severity_of(oximetry(86), copd, "spo2_low") is None  # score 1: no home alert
    assert severity_of(oximetry(85), copd, "spo2_low") == Severity.MEDIUM
    hf = thresholds.programme_default("heart_failure")
    assert severity_of(oximetry(93), hf, "spo2_low") == Severity.MEDIUM  # NEWS2 92-93
    # a resident of another programme at risk of hypercapnia: the scale brings its tiers
    doc = thresholds.changed_document(hf.thresholds, {"spo2_scale": 2})
    assert doc.ranges["spo2_low"] == {Severity(k): v for k, v in programmes.spo2_tiers(2).items()}
    back = thresholds.changed_document(doc, {"spo2_scale": 1})
    assert back.ranges["spo2_low"] == hf.thresholds.ranges["spo2_low"]
    # limits given with the scale are the clinician's, not the scale's
    own = thresholds.changed_document(
        hf.thresholds, {"spo2_scale": 2, "ranges": {"spo2_low": {"medium": {"spo2": 87}}}}
    )
    assert own.ranges["spo2_low"][Severity.MEDIUM] == {"spo2": 87}


# --- sources ------------------------------------------------------------------------------


def test_every_default_rule_has_a_source() -> None:
    for row in catalogue.RULES:
        src = row.source
        assert src.guideline.strip() and src.edition.strip() and src.implements.strip(), row
    # and every limit of every profile is a catalogue row: no default without a source
    sourced = {
        (r.rule, str(r.severity), tuple(sorted(r.limits.items()))) for r in catalogue.rows("range")
    }
    for programme in programmes.PROGRAMMES:
        doc = thresholds.programme_default(programme).thresholds
        for rule, tiers in doc.ranges.items():
            for severity, limits in tiers.items():
                assert (rule, str(severity), tuple(sorted(limits.items()))) in sourced
        trend_rows = {r.rule for r in catalogue.rows("weight_gain")}
        assert set(doc.trends) == trend_rows
        assert set(doc.flags) == {r.rule for r in catalogue.rows("device_flag")}


def hemhub(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_alerts_rules_command_lists_each_rule_with_its_source() -> None:
    import json

    out = json.loads(hemhub("alerts", "rules", "--format", "json"))
    assert out["profile_version"] == programmes.PROFILE_VERSION
    assert len(out["rules"]) == len(catalogue.RULES)
    for rule in out["rules"]:
        assert rule["source"]["guideline"] and rule["source"]["implements"], rule
        assert rule["severity"] in {str(s) for s in Severity}
    hf = [r for r in out["rules"] if r["rule"] == "weight_gain_3d"]
    assert hf[0]["programmes"] == ["heart_failure"]
    assert hf[0]["limit"] == "gain of more than 2 kg within 3 days"


def test_docs_table_is_the_commands_table() -> None:
    text = DOCS.read_text()
    found = re.search(
        r"<!-- generated: hemhub alerts rules --format table -->\n(.*?)\n<!-- end of generated",
        text,
        re.S,
    )
    assert found, "docs/alerts.md lost its generated table"
    assert found.group(1) == hemhub("alerts", "rules", "--format", "table").strip()


# --- a worse value never gets a milder severity -----------------------------------------

RANGE_METRICS = [
    (rule, metric, unit)
    for rule, metric, unit in [
        ("blood_pressure_high", "systolic", "mm[Hg]"),
        ("blood_pressure_high", "diastolic", "mm[Hg]"),
        ("blood_pressure_high", "systolic", "kPa"),
        ("blood_pressure_low", "systolic", "mm[Hg]"),
        ("pulse_high", "pulse", "/min"),
        ("pulse_low", "pulse", "/min"),
        ("spo2_low", "spo2", "%"),
        ("glucose_low", "glucose", "mmol/L"),
        ("glucose_low", "glucose", "mg/dL"),
        ("glucose_high", "glucose", "mmol/L"),
        ("glucose_high", "glucose", "mg/dL"),
    ]
]
SPANS = {"mm[Hg]": (30, 260), "kPa": (4, 35), "/min": (20, 220), "%": (50, 100),
         "mmol/L": (0.5, 40), "mg/dL": (10, 720)}  # fmt: skip


@given(
    programme=st.sampled_from(programmes.PROGRAMMES),
    case=st.sampled_from(RANGE_METRICS),
    data=st.data(),
)
def test_a_worse_value_never_gets_a_milder_severity(
    programme: str, case: tuple[str, str, str], data: st.DataObject
) -> None:
    rule, metric, unit = case
    lo, hi = SPANS[unit]
    a, b = sorted(data.draw(st.lists(st.floats(lo, hi), min_size=2, max_size=2)))
    worse, better = (b, a) if RANGE_SPECS[rule].above else (a, b)
    eff = thresholds.programme_default(programme)
    got_worse = severity_of(with_metric(metric, worse, unit), eff, rule)
    got_better = severity_of(with_metric(metric, better, unit), eff, rule)
    assert rank(got_worse) >= rank(got_better)


@given(
    gains=st.lists(st.floats(0, 6), min_size=2, max_size=2),
    programme=st.just("heart_failure"),
)
def test_a_larger_weight_gain_never_gets_a_milder_severity(
    gains: list[float], programme: str
) -> None:
    eff = thresholds.programme_default(programme)
    small, large = sorted(gains)

    def worst(gain: float) -> int:
        series = Series([T0, T0 + timedelta(days=2)], np.array([80.0, 80.0 + gain]))
        fired, _ = engine.judge_weight_trend(series, T0 + timedelta(days=2), eff, uuid.uuid4())
        return max((SEVERITY_RANK[sev] for _, _, sev, _ in fired), default=0)

    assert worst(large) >= worst(small)


# --- weight -------------------------------------------------------------------------------


def trend(gain_kg: float, over_days: float, programme: str) -> dict[str, Severity]:
    eff = thresholds.programme_default(programme)
    at = T0 + timedelta(days=over_days)
    series = Series([T0, at], np.array([80.0, 80.0 + gain_kg]))
    fired, _ = engine.judge_weight_trend(series, at, eff, uuid.uuid4())
    return {name: sev for name, _, sev, _ in fired}


@pytest.mark.parametrize("row", catalogue.rows("weight_gain"), ids=lambda r: r.rule)
def test_each_weight_row_just_outside_and_just_inside(row: DefaultRule) -> None:
    assert row.kg is not None and row.days is not None
    days = row.days - 0.5
    assert trend(row.kg + 0.1, days, "heart_failure").get(row.rule) == row.severity
    assert row.rule not in trend(row.kg, days, "heart_failure")  # "more than"
    # outside the window, the same gain is no trend of this rule
    assert row.rule not in trend(row.kg + 0.1, row.days + 0.5, "heart_failure")
    # available to every programme, on only where the catalogue says
    for programme in programmes.PROGRAMMES:
        on = programme in row.on_for
        assert (row.rule in trend(row.kg + 1, days, programme)) == on


def test_weight_rules_in_pounds_and_turned_on_for_another_programme(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn, "hypertension")
    thresholds.create_version(
        conn,
        patient,
        {"trends": {"weight_gain_3d": {"enabled": True}}},
        created_by="dr-eva",
        applies_from=T0 - timedelta(days=1),
    )
    lb = 0.45359237

    def pounds(kg: float, at: datetime) -> Reading:
        q = Quantity(name="weight", loinc="29463-7", value=kg / lb, unit="[lb_av]")
        return reading(MT.BODY_WEIGHT, [q], at=at, dev=dev)

    put(conn, pounds(80.0, T0), pounds(81.9, T0 + timedelta(days=1)))
    assert alerts_of(conn, patient) == []  # 1.9 kg: not more than 2
    put(conn, pounds(82.2, T0 + timedelta(days=2)))
    a = by_rule(conn, patient)["weight_gain_3d"]
    assert a["severity"] == "high" and a["rule_version"] == programmes.PROFILE_VERSION + 1
    assert "weight_gain_7d" not in by_rule(conn, patient)  # still off for this resident


# --- device flags ---------------------------------------------------------------------------


def flagged_reading(row: DefaultRule, at: datetime, dev: Any, flag: bool = True) -> Reading:
    if row.flags[0].startswith("result_"):
        r = reading(
            MT.GLUCOSE,
            [Quantity(name="glucose", loinc="15074-8", value=None, unit="mmol/L")],
            at=at,
            dev=dev,
        )
    else:
        r = bp_reading(130, 85, measured_at=at, dev=dev, salt=str(at))
    return r.model_copy(update={"status": list(row.flags[:1]) if flag else []})


@pytest.mark.parametrize("row", catalogue.rows("device_flag"), ids=lambda r: r.rule)
def test_each_device_flag_row_fires_with_its_severity(
    conn: psycopg.Connection[Any], row: DefaultRule
) -> None:
    dev, patient = resident(conn, "hypertension")
    put(conn, flagged_reading(row, T0, dev, flag=False))
    assert row.rule not in by_rule(conn, patient)  # without the flag: nothing
    put(conn, flagged_reading(row, T0 + timedelta(hours=1), dev))
    a = by_rule(conn, patient)[row.rule]
    assert (a["severity"], a["status"], a["count"]) == (str(row.severity), "open", 1)
    assert a["reason"].endswith(f"flagged {row.flags[0]} (1 within 7 days)")


def test_irregular_pulse_is_counted_over_a_week_and_clears_once_seen(
    conn: psycopg.Connection[Any],
) -> None:
    [row] = [r for r in catalogue.rows("device_flag") if r.rule == "irregular_pulse"]
    dev, patient = resident(conn, "diabetes")
    put(conn, flagged_reading(row, T0, dev))
    put(conn, flagged_reading(row, T0 + timedelta(days=2), dev))
    put(conn, flagged_reading(row, T0 + timedelta(days=3), dev, flag=False))
    a = by_rule(conn, patient)["irregular_pulse"]
    assert (a["severity"], a["count"], a["status"]) == ("low", 2, "open")
    assert a["last_reason"] == (
        "blood_pressure reading at 2026-11-26T07:02Z flagged irregular_pulse (2 within 7 days)"
    )
    from ingest.schedule import run_scheduled_evaluation

    later = T0 + timedelta(days=10)  # both flags left the window, but nobody has seen them
    run_scheduled_evaluation(conn, later)
    assert by_rule(conn, patient)["irregular_pulse"]["status"] == "open"
    run_scheduled_evaluation(conn, T0 + timedelta(days=5))
    ack(conn, patient, "irregular_pulse")
    run_scheduled_evaluation(conn, T0 + timedelta(days=5))  # still within the week
    assert by_rule(conn, patient)["irregular_pulse"]["status"] == "acknowledged"
    run_scheduled_evaluation(conn, later)
    a = by_rule(conn, patient)["irregular_pulse"]
    assert (a["status"], a["auto_resolved"]) == ("resolved", True)
    assert a["resolution_note"].startswith("0 flagged readings within 7 days")


def test_flag_count_within_window() -> None:
    rule = DeviceFlag(flags=("irregular_pulse",), count=2, days=7)
    seen = [(T0, ["irregular_pulse"]), (T0 + timedelta(days=6), ["cuff_too_loose"])]
    assert flags_within(seen, rule, T0 + timedelta(days=6)) == 1
    seen.append((T0 + timedelta(days=6, hours=1), ["irregular_pulse", "body_movement"]))
    assert flags_within(seen, rule, T0 + timedelta(days=6, hours=1)) == 2
    assert flags_within(seen, rule, T0 + timedelta(days=7, hours=1)) == 1  # (at - 7 d, at]


# --- versions -----------------------------------------------------------------------------


def test_an_alert_opened_under_profile_1_keeps_its_version(conn: psycopg.Connection[Any]) -> None:
    dev, patient = resident(conn, "heart_failure")
    conn.execute(
        "INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, reason,"
        " last_reason, measured_at, last_measured_at) VALUES"
        " ('kommun-a', %s, 'spo2_low', 1, 'high', 'old', 'old', %s, %s)",
        (patient, T0 - timedelta(days=1), T0 - timedelta(days=1)),
    )
    put(conn, oximetry(84).model_copy(update={"device": dev, "measured_at": T0}))
    [a] = [x for x in alerts_of(conn, patient) if x["rule"] == "spo2_low"]
    assert (a["rule_version"], a["threshold_set_id"], a["count"]) == (1, None, 2)
    assert a["severity"] == "critical"  # judged by today's profile, escalated
    assert a["last_reason"] == "SpO2 84 % at 2026-11-24T07:02Z (lower limit 85)"
