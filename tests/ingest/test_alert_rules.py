"""The alert engine on scripted scenarios against the real PostgreSQL: every rule fires
and clears with the right severity, version and reason; lifecycle and NOTIFY."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
import pytest

from hemhub.contract import (
    ClockSource,
    ClockTrust,
    DeviceEvent,
    DeviceHealth,
    DeviceIdentity,
    DeviceProfile,
    HubAlarm,
    HubStatus,
    MeasurementType,
    Quantity,
    Reading,
)
from ingest import alerts, registry, thresholds
from ingest.migrations import migrate
from ingest.pipeline import StatusUpdate, store
from ingest.programmes import PROFILE_VERSION as PROFILE
from ingest.rules import counts_within, rise_at
from ingest.schedule import run_scheduled_evaluation, set_schedule
from tests.factories import batch, bp_reading, device, unique_hub_id
from tests.ingest.conftest import on_both_partitionings
from tests.ingest.factories import LONG_AGO, alerts_of, entitle

T0 = datetime(2026, 11, 24, 7, 2, tzinfo=UTC)
MT = MeasurementType
ADDRESS = "C0:FF:EE:00:00:01"  # tests.factories.device()
#: The resident's hub, entitled to the resident's devices (the database is the test's own).
HUB = "resident-hub"


def resident(
    conn: psycopg.Connection[Any], programme: str = "hypertension", serial: str = "S-1"
) -> tuple[DeviceIdentity, UUID]:
    identity = device(serial=serial)
    device_id = registry.ensure_device(conn, identity)
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    patient_id = registry.create_patient(conn, "kommun-a", "Resident", programme)
    registry.assign_device(conn, device_id, patient_id, T0 - timedelta(days=60))
    entitle(conn, HUB, device_id)
    return identity, patient_id


def reading(
    mtype: MeasurementType,
    values: list[Quantity],
    *,
    at: datetime,
    dev: DeviceIdentity,
    status: list[str] | None = None,
    event: DeviceEvent | None = None,
    received_at: datetime | None = None,
) -> Reading:
    ident = f"{dev.stable_id}|{mtype}|{values}|{at.isoformat()}|{status}|{event}"
    raw = ident.encode()
    return Reading(
        idempotency_key=hashlib.sha256(raw).hexdigest(),
        device=dev,
        measurement_type=mtype,
        characteristic="2A5F",
        values=values,
        status=status or [],
        device_time=at.replace(tzinfo=None),
        hub_received_at=received_at or at + timedelta(seconds=5),
        measured_at=at,
        clock=ClockTrust(source=ClockSource.SET_BY_HUB, hub_clock_synced=True),
        raw_hex=raw.hex()[:1024],
        event=event,
    )


def spo2(value: float | None, at: datetime, dev: DeviceIdentity) -> Reading:
    return reading(
        MT.PULSE_OXIMETRY,
        [
            Quantity(name="oxygen_saturation", loinc="2708-6", value=value, unit="%"),
            Quantity(
                name="pulse", loinc="8867-4", value=None if value is None else 72, unit="/min"
            ),
        ],
        at=at,
        dev=dev,
    )


def weight(kg: float, at: datetime, dev: DeviceIdentity) -> Reading:
    quantity = Quantity(name="weight", loinc="29463-7", value=kg, unit="kg")
    return reading(MT.BODY_WEIGHT, [quantity], at=at, dev=dev)


def med(kind: str, at: datetime, dev: DeviceIdentity, dose: int | None = 2) -> Reading:
    event = DeviceEvent(kind=kind, dose_id=dose, slot=7, needs_staff_attention=False)
    return reading(MT.MEDICATION_EVENT, [], at=at, dev=dev, event=event)


def put(conn: psycopg.Connection[Any], *readings: Reading, hub: str | None = None) -> None:
    store(conn, [batch(hub or HUB, *readings)])


def by_rule(conn: psycopg.Connection[Any], patient_id: UUID) -> dict[str, dict[str, Any]]:
    """The newest alert of each rule."""
    return {a["rule"]: a for a in alerts_of(conn, patient_id)}


def ack(conn: psycopg.Connection[Any], patient_id: UUID, rule: str) -> None:
    conn.execute(
        "UPDATE alerts SET status = 'acknowledged', acknowledged_by = 'anna',"
        " acknowledged_at = now() WHERE patient_id = %s AND rule = %s AND status = 'open'",
        (patient_id, rule),
    )


# --- range rules --------------------------------------------------------------------------


def test_range_rule_fires_with_the_programme_tier_and_escalates(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn, "heart_failure")
    put(conn, spo2(91, T0, dev))
    a = by_rule(conn, patient)["spo2_low"]
    assert (a["severity"], a["rule_version"], a["threshold_set_id"]) == ("high", PROFILE, None)
    assert a["reason"] == "SpO2 91 % at 2026-11-24T07:02Z (lower limit 92)"
    put(conn, spo2(84, T0 + timedelta(hours=1), dev))
    [a] = [x for x in alerts_of(conn, patient) if x["rule"] == "spo2_low"]
    assert (a["severity"], a["count"]) == ("critical", 2)  # escalated, same alert
    assert a["last_reason"] == "SpO2 84 % at 2026-11-24T08:02Z (lower limit 85)"
    # a milder repeat never downgrades it
    put(conn, spo2(91, T0 + timedelta(hours=2), dev))
    assert by_rule(conn, patient)["spo2_low"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("programme", "mtype", "values", "rule", "severity"),
    [
        (
            "diabetes",
            MT.GLUCOSE,
            [("glucose", "15074-8", 2.8, "mmol/L")],
            "glucose_low",
            "critical",
        ),
        ("diabetes", MT.GLUCOSE, [("glucose", "2339-0", 400.0, "mg/dL")], "glucose_high", "high"),
        (
            "copd",
            MT.PULSE_OXIMETRY,
            [("oxygen_saturation", "2708-6", 85.0, "%")],  # NEWS2 scale 2: 84-85 scores 2
            "spo2_low",
            "medium",
        ),
        (
            "hypertension",
            MT.BLOOD_PRESSURE,
            [("systolic", "8480-6", 85.0, "mm[Hg]")],
            "blood_pressure_low",
            "high",
        ),
        (
            "hypertension",
            MT.BLOOD_PRESSURE,
            [("pulse", "8867-4", 142.0, "/min")],
            "pulse_high",
            "high",
        ),
    ],
)
def test_programme_defaults(
    conn: psycopg.Connection[Any],
    programme: str,
    mtype: MeasurementType,
    values: list[tuple[str, str, float, str]],
    rule: str,
    severity: str,
) -> None:
    dev, patient = resident(conn, programme)
    quantities = [Quantity(name=n, loinc=loinc, value=v, unit=u) for n, loinc, v, u in values]
    put(conn, reading(mtype, quantities, at=T0, dev=dev))
    [a] = alerts_of(conn, patient)
    assert (a["rule"], a["severity"], a["rule_version"]) == (rule, severity, PROFILE)


def test_range_alert_clears_automatically_only_once_acknowledged(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn)
    put(conn, bp_reading(190, 100, measured_at=T0, dev=dev))
    put(conn, bp_reading(130, 80, measured_at=T0 + timedelta(hours=1), dev=dev))
    assert by_rule(conn, patient)["blood_pressure_high"]["status"] == "open"  # nobody saw it
    ack(conn, patient, "blood_pressure_high")
    # an in-range backlog reading measured before the alert's last firing clears nothing
    put(conn, bp_reading(131, 80, measured_at=T0 - timedelta(hours=1), dev=dev))
    assert by_rule(conn, patient)["blood_pressure_high"]["status"] == "acknowledged"
    put(conn, bp_reading(132, 80, measured_at=T0 + timedelta(hours=2), dev=dev))
    a = by_rule(conn, patient)["blood_pressure_high"]
    assert (a["status"], a["auto_resolved"], a["resolved_by"]) == ("resolved", True, "hemhub")
    assert a["resolution_note"] == "back in range: BP 132/80 mm[Hg] at 2026-11-24T09:02Z"


# --- versioned thresholds -----------------------------------------------------------------


def test_threshold_change_is_a_new_version_recorded_on_later_alerts(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn)
    change = {"ranges": {"blood_pressure_high": {"high": {"systolic": 150}}}}
    v2 = thresholds.create_version(
        conn, patient, change, created_by="dr-eva", applies_from=T0 + timedelta(days=1)
    )
    # the first override of a resident follows the programme profile's version
    assert (v2.version, v2.created_by, v2.source) == (PROFILE + 1, "dr-eva", "patient")
    assert v2.thresholds.ranges["blood_pressure_high"][alerts.Severity.HIGH] == {
        "systolic": 150,
        "diastolic": 110,
    }
    # measured before v2 applies (arriving late): judged by the profile, 155 < 160
    old = bp_reading(155, 90, measured_at=T0, received_at=T0 + timedelta(days=2), dev=dev)
    put(conn, old)
    assert alerts_of(conn, patient) == []
    put(conn, bp_reading(155, 90, measured_at=T0 + timedelta(days=2), dev=dev))
    [a] = alerts_of(conn, patient)
    assert (a["rule_version"], a["threshold_set_id"]) == (v2.version, v2.set_id)
    assert a["reason"].endswith("(threshold 150/110)")
    # a retroactive correction (later version, earlier applies_from) wins from then on
    v3 = thresholds.create_version(
        conn,
        patient,
        {"ranges": {"blood_pressure_high": None}},
        created_by="dr-eva",
        applies_from=T0,
    )
    book = thresholds.load(conn, [patient])
    assert v3.version == v2.version + 1
    assert book.at(patient, T0 + timedelta(days=3)).version == v3.version
    assert book.at(patient, T0 - timedelta(days=1)).version == PROFILE
    with pytest.raises(ValueError):
        thresholds.create_version(
            conn, patient, {"ranges": {"nonsense": {}}}, created_by="x", applies_from=T0
        )


# --- replay and late ----------------------------------------------------------------------


@on_both_partitionings
def test_replayed_reading_never_raises_a_second_alert(conn: psycopg.Connection[Any]) -> None:
    dev, patient = resident(conn)
    r = bp_reading(200, 120, measured_at=T0, dev=dev)
    hub = HUB
    put(conn, r, hub=hub)
    conn.execute("UPDATE alerts SET status = 'resolved', resolved_at = now()")
    put(conn, r, hub=hub)  # the hub replays its outbox after a reconnect
    [a] = alerts_of(conn, patient)
    assert (a["status"], a["count"]) == ("resolved", 1)


@on_both_partitionings
def test_late_reading_is_judged_at_its_measurement_time_and_marked_late(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn)
    r = bp_reading(190, 115, measured_at=T0, received_at=T0 + timedelta(hours=5), dev=dev)
    put(conn, r)
    [a] = alerts_of(conn, patient)
    assert (a["late"], a["measured_at"], a["rule_version"]) == (True, T0, PROFILE)


# --- sensor status ------------------------------------------------------------------------


def test_sensor_status_fires_and_clears_with_notify(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    dev, patient = resident(conn)
    flagged = bp_reading(120, 80, measured_at=T0, dev=dev).model_copy(
        update={"status": ["cuff_too_loose", "irregular_pulse"]}
    )
    again = bp_reading(121, 80, measured_at=T0 + timedelta(minutes=5), dev=dev).model_copy(
        update={"status": ["cuff_too_loose"]}
    )
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        put(conn, flagged)
        put(conn, again)
        put(conn, bp_reading(122, 80, measured_at=T0 + timedelta(minutes=10), dev=dev))
        events = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=4)]
    sensor = [e for e in events if e["rule"] == "sensor_status_blood_pressure"]
    assert [(e["event"], e["status"]) for e in sensor] == [
        ("opened", "open"),
        ("updated", "open"),
        ("resolved", "resolved"),
    ]
    # the irregular pulse is no sensor problem but a clinical flag with its own rule
    # (tests/ingest/test_clinical_defaults.py); an unflagged reading does not clear it
    flag = [(e["rule"], e["event"]) for e in events if e not in sensor]
    assert flag == [("irregular_pulse", "opened")]
    a = by_rule(conn, patient)["sensor_status_blood_pressure"]
    assert a["severity"] == "low" and a["count"] == 2
    assert a["reason"] == "blood_pressure reading at 2026-11-24T07:02Z flagged: cuff_too_loose"
    assert a["auto_resolved"] is True


def test_low_perfusion_flag(conn: psycopg.Connection[Any]) -> None:
    dev, patient = resident(conn, "copd")
    r = spo2(95, T0, dev).model_copy(update={"status": ["low_perfusion"]})
    put(conn, r)
    assert by_rule(conn, patient)["sensor_status_pulse_oximetry"]["severity"] == "low"


# --- trends -------------------------------------------------------------------------------


@on_both_partitionings
def test_weight_gain_over_three_days_fires_and_clears_on_schedule(
    conn: psycopg.Connection[Any],
) -> None:
    dev, patient = resident(conn, "heart_failure")
    put(conn, weight(80.0, T0, dev), weight(81.0, T0 + timedelta(days=1), dev))
    assert "weight_gain_3d" not in by_rule(conn, patient)
    put(conn, weight(82.2, T0 + timedelta(days=2), dev))
    a = by_rule(conn, patient)["weight_gain_3d"]
    assert (a["severity"], a["rule_version"]) == ("high", PROFILE)
    assert a["reason"] == (
        "weight +2.2 kg within 3 days: 80 kg at 2026-11-24T07:02Z -> 82.2 kg at"
        " 2026-11-26T07:02Z (more than 2 kg in 3 days)"
    )
    # still true at the next scheduled run: nothing changes (no count, no NOTIFY)
    counts = run_scheduled_evaluation(conn, T0 + timedelta(days=2, hours=1))
    assert counts["updated"] == 0 and by_rule(conn, patient)["weight_gain_3d"]["count"] == 1
    # a week later the window holds no gain; it clears once acknowledged
    later = T0 + timedelta(days=8)
    run_scheduled_evaluation(conn, later)
    assert by_rule(conn, patient)["weight_gain_3d"]["status"] == "open"
    ack(conn, patient, "weight_gain_3d")
    assert run_scheduled_evaluation(conn, later)["resolved"] == 1
    assert by_rule(conn, patient)["weight_gain_3d"]["auto_resolved"] is True


def test_trend_math_is_vectorised() -> None:
    times = np.array([0.0, 86400, 2 * 86400, 5 * 86400])
    values = np.array([80.0, 79.5, 82.0, 81.0])
    assert rise_at(2 * 86400, times, values, 3 * 86400) == (1, 2)
    assert rise_at(9 * 86400, times, values, 3 * 86400) is None
    assert list(counts_within(times, np.array([2 * 86400.0, 6 * 86400.0]), 3 * 86400)) == [3, 1]


# --- medication ---------------------------------------------------------------------------


def test_medication_events(conn: psycopg.Connection[Any]) -> None:
    dev, patient = resident(conn)
    put(conn, med("dose_missed", T0, dev), med("refill_low", T0, dev, None))
    put(conn, med("jam", T0 + timedelta(hours=1), dev, None), med("tamper", T0, dev, None))
    alerts_now = by_rule(conn, patient)
    assert {r: a["severity"] for r, a in alerts_now.items()} == {
        "medication_missed_dose": "high",
        "medication_refill_low": "medium",
        "medication_robot_error": "high",
        "medication_tamper": "high",
    }
    assert alerts_now["medication_missed_dose"]["reason"] == (
        "dose 2 (slot 7) missed at 2026-11-24T07:02Z: locked away, contact the resident"
    )
    put(conn, med("refilled", T0 + timedelta(hours=2), dev, None))
    put(conn, med("dose_dispensed", T0 + timedelta(hours=3), dev))
    states = {r: a["status"] for r, a in by_rule(conn, patient).items()}
    assert states == {
        "medication_missed_dose": "open",  # staff must act: never cleared by the robot
        "medication_refill_low": "resolved",
        "medication_robot_error": "resolved",
        "medication_tamper": "open",
    }


def test_repeated_late_doses(conn: psycopg.Connection[Any]) -> None:
    dev, patient = resident(conn)
    put(conn, med("dose_late", T0, dev, 1), med("late", T0 + timedelta(days=2), dev, 2))
    assert alerts_of(conn, patient) == []
    put(conn, med("dose_late", T0 + timedelta(days=5), dev, 3))
    a = by_rule(conn, patient)["medication_doses_late"]
    assert a["severity"] == "medium"
    assert a["reason"] == "3 late doses within 7 days (latest at 2026-11-29T07:02Z)"
    ack(conn, patient, "medication_doses_late")
    run_scheduled_evaluation(conn, T0 + timedelta(days=8))  # the first dropped out
    assert by_rule(conn, patient)["medication_doses_late"]["status"] == "resolved"


# --- missing data -------------------------------------------------------------------------

NOW = T0 + timedelta(days=3)


def hub_status(
    hub: str, *, online: bool = True, health: DeviceHealth | None = None, **fields: Any
) -> HubStatus:
    health = health or DeviceHealth(address=ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE)
    return HubStatus(hub_id=hub, online=online, devices=[health], **fields)


def post_status(conn: psycopg.Connection[Any], status: HubStatus, at: datetime) -> None:
    store(conn, [], statuses=[StatusUpdate(status, at)])


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        ("hub_offline", "hub {hub} offline since 2026-11-25T07:02Z"),
        ("not_seen", "device C0:FF:EE:00:00:01 not seen by hub {hub} since 2026-11-24T07:03Z"),
        (
            "seen_no_measurement",
            "device C0:FF:EE:00:00:01 seen by hub {hub} at 2026-11-27T06:02Z but no measurement"
            " taken (last reading on the hub 2026-11-24T07:02Z)",
        ),
        (
            "error_readings",
            "device error readings: 2 without a valid value since 2026-11-24T07:02Z,"
            " last at 2026-11-26T07:02Z",
        ),
        ("device_error", "device C0:FF:EE:00:00:01 failing on hub {hub}: ATT timeout (3 failed"),
    ],
)
@on_both_partitionings
def test_missing_data_says_why(conn: psycopg.Connection[Any], cause: str, expected: str) -> None:
    dev, patient = resident(conn)
    hub = HUB
    set_schedule(
        conn,
        patient,
        "blood_pressure",
        timedelta(days=1),
        created_by="anna",
        starts_at=T0 - timedelta(days=30),
    )
    put(conn, bp_reading(125, 80, measured_at=T0, dev=dev), hub=hub)
    health = DeviceHealth(
        address=ADDRESS,
        profile=DeviceProfile.BLOOD_PRESSURE,
        last_seen_at=T0 + timedelta(minutes=1),
        last_reading_at=T0,
    )
    status_at = NOW - timedelta(minutes=1)
    if cause == "hub_offline":
        post_status(conn, hub_status(hub, online=False, health=health), T0 + timedelta(days=1))
    elif cause == "seen_no_measurement":
        seen = health.model_copy(update={"last_seen_at": NOW - timedelta(hours=1)})
        post_status(conn, hub_status(hub, health=seen), status_at)
    elif cause == "device_error":
        failing = health.model_copy(
            update={"last_error": "ATT timeout", "consecutive_failures": 3, "last_seen_at": NOW}
        )
        post_status(conn, hub_status(hub, health=failing), status_at)
    else:
        post_status(conn, hub_status(hub, health=health), status_at)
    if cause == "error_readings":
        for day in (1, 2):
            put(
                conn,
                bp_reading(None, None, pulse=None, measured_at=T0 + timedelta(days=day), dev=dev),
                hub=hub,
            )
    counts = run_scheduled_evaluation(conn, NOW)
    a = by_rule(conn, patient)["missing_blood_pressure"]
    assert counts["opened"] >= 1
    assert a["severity"] == "medium" and a["rule_version"] == PROFILE
    assert a["measured_at"] == T0 + timedelta(days=1)  # when it became due
    assert a["reason"].startswith(
        "no blood_pressure measurement since 2026-11-24T07:02Z (expected every 1 day): "
    )
    assert expected.format(hub=hub) in a["reason"]
    # a second run finds the same: no update
    assert run_scheduled_evaluation(conn, NOW)["updated"] == 0
    # a measurement arrives: resolved at once, at store time (judged against the wall
    # clock, so it is measured now, not at the scripted NOW)
    just_now = datetime.now(UTC).replace(microsecond=0)
    put(conn, bp_reading(126, 81, measured_at=just_now, dev=dev), hub=hub)
    a = by_rule(conn, patient)["missing_blood_pressure"]
    assert (a["status"], a["auto_resolved"]) == ("resolved", True)


def test_missing_data_without_any_hub_report(conn: psycopg.Connection[Any]) -> None:
    _, patient = resident(conn)
    set_schedule(conn, patient, "body_weight", timedelta(days=1), created_by="anna", starts_at=T0)
    run_scheduled_evaluation(conn, NOW)
    a = by_rule(conn, patient)["missing_body_weight"]
    assert a["reason"] == (
        "no body_weight measurement yet (expected every 1 day): no hub reports the resident's"
        " device (not on any hub's allow-list)"
    )
    # not yet due: nothing
    _, other = resident(conn, serial="S-2")
    set_schedule(conn, other, "body_weight", timedelta(days=1), created_by="anna", starts_at=NOW)
    run_scheduled_evaluation(conn, NOW + timedelta(hours=12))
    assert alerts_of(conn, other) == []


# --- technical ----------------------------------------------------------------------------


def test_hub_offline_outbox_and_battery_fire_and_clear(conn: psycopg.Connection[Any]) -> None:
    _, patient = resident(conn)
    hub = unique_hub_id()
    weak = DeviceHealth(address=ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE, battery_level=12)
    post_status(conn, hub_status(hub, online=False, health=weak), NOW - timedelta(hours=7))
    run_scheduled_evaluation(conn, NOW)
    got = {r: (a["severity"], a["reason"]) for r, a in by_rule(conn, patient).items()}
    assert got == {
        "hub_offline": ("medium", f"hub {hub} offline since 2026-11-27T00:02Z (limit 6 h)"),
        "device_battery_low": (
            "low",
            "device C0:FF:EE:00:00:01 (blood_pressure) battery 12 % (limit 20 %)",
        ),
    }
    # back online, with a backlog to send and a new battery
    fresh = weak.model_copy(update={"battery_level": 90})
    backlog = hub_status(hub, health=fresh, outbox_depth=800, outbox_oldest_age_s=7 * 3600)
    post_status(conn, backlog, NOW)
    counts = run_scheduled_evaluation(conn, NOW + timedelta(minutes=1))
    assert (counts["opened"], counts["resolved"]) == (1, 2)
    states = {r: a["status"] for r, a in by_rule(conn, patient).items()}
    assert states == {
        "hub_offline": "resolved",
        "device_battery_low": "resolved",
        "hub_outbox_backlog": "open",
    }
    assert by_rule(conn, patient)["hub_outbox_backlog"]["reason"] == (
        f"hub {hub} outbox 800 readings, oldest 7 h"
    )
    post_status(conn, hub_status(hub, health=fresh, outbox_depth=0), NOW + timedelta(minutes=2))
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=3))
    assert by_rule(conn, patient)["hub_outbox_backlog"]["status"] == "resolved"


def test_hub_fault_alarms_fire_and_clear(conn: psycopg.Connection[Any]) -> None:
    _, patient = resident(conn)
    hub = unique_hub_id()
    alarms = [HubAlarm.DISK_LOW, HubAlarm.ADAPTER_UNRESPONSIVE, HubAlarm.CLOCK_NOT_SYNCED]
    post_status(conn, hub_status(hub, alarms=alarms), NOW)
    run_scheduled_evaluation(conn, NOW)
    a = by_rule(conn, patient)["hub_fault"]
    assert (a["status"], a["severity"], a["rule_version"]) == ("open", "medium", PROFILE)
    assert a["reason"] == f"hub {hub}: adapter_unresponsive, disk_low"
    # the same alarms again: no update; one alarm gone: the reason follows
    assert run_scheduled_evaluation(conn, NOW + timedelta(minutes=1))["updated"] == 0
    post_status(conn, hub_status(hub, alarms=[HubAlarm.DISK_LOW]), NOW + timedelta(minutes=2))
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=3))
    assert by_rule(conn, patient)["hub_fault"]["last_reason"] == f"hub {hub}: disk_low"
    post_status(conn, hub_status(hub), NOW + timedelta(minutes=4))
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=5))
    a = by_rule(conn, patient)["hub_fault"]
    assert (a["status"], a["auto_resolved"], a["resolution_note"]) == (
        "resolved",
        True,
        "no hub alarm",
    )


def second_device(
    conn: psycopg.Connection[Any], patient_id: UUID, serial: str, address: str
) -> DeviceIdentity:
    identity = device(serial=serial, address=address)
    device_id = registry.ensure_device(conn, identity)
    registry.assign_device(conn, device_id, patient_id, T0 - timedelta(days=30))
    registry.allow_device(conn, HUB, device_id, LONG_AGO)
    return identity


def test_robot_low_battery_is_cleared_only_by_the_robots_own_battery(
    conn: psycopg.Connection[Any],
) -> None:
    """The robot's event and the hub's battery check are two rules: a fine cuff battery
    in the hub status says nothing about the robot's."""
    cuff, patient = resident(conn)
    robot = second_device(conn, patient, "MDR-1", "C0:FF:EE:00:00:02")
    put(conn, med("low_battery", NOW - timedelta(hours=1), robot, None))
    assert {r: a["status"] for r, a in by_rule(conn, patient).items()} == {
        "dispenser_battery_low": "open"
    }
    assert by_rule(conn, patient)["dispenser_battery_low"]["reason"] == (
        "medication robot battery low at 2026-11-27T06:02Z"
    )
    hub = unique_hub_id()
    health = DeviceHealth(address=ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE, battery_level=90)
    post_status(conn, hub_status(hub, health=health), NOW)
    run_scheduled_evaluation(conn, NOW)
    assert {r: a["status"] for r, a in by_rule(conn, patient).items()} == {
        "dispenser_battery_low": "open"
    }
    # the hub reports the robot low too: the hub's check opens its own alert
    weak = DeviceHealth(address=robot.address, profile=DeviceProfile.DISPENSER, battery_level=15)
    post_status(conn, HubStatus(hub_id=hub, online=True, devices=[health, weak]), NOW)
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=1))
    assert {r: a["status"] for r, a in by_rule(conn, patient).items()} == {
        "dispenser_battery_low": "open",
        "device_battery_low": "open",
    }
    charged = weak.model_copy(update={"battery_level": 80})
    post_status(conn, HubStatus(hub_id=hub, online=True, devices=[health, charged]), NOW)
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=2))
    got = by_rule(conn, patient)
    assert {r: a["status"] for r, a in got.items()} == {
        "dispenser_battery_low": "resolved",
        "device_battery_low": "resolved",
    }
    assert got["dispenser_battery_low"]["resolution_note"] == (
        "dispenser battery C0:FF:EE:00:00:02 80 %"
    )
    assert cuff.address == ADDRESS


def test_a_returned_device_ends_its_technical_alerts(conn: psycopg.Connection[Any]) -> None:
    """The former resident's alerts resolve when the assignment ends; the next resident
    starts with none of them."""
    identity, former = resident(conn)
    device_id = registry.device_id_by_stable_id(conn, identity.stable_id)
    assert device_id is not None
    hub = unique_hub_id()
    weak = DeviceHealth(address=ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE, battery_level=12)
    down = hub_status(hub, online=False, health=weak, outbox_depth=800)
    post_status(conn, down, NOW - timedelta(hours=7))
    run_scheduled_evaluation(conn, NOW)
    technical = {"hub_offline", "hub_outbox_backlog", "device_battery_low"}
    assert {r: a["status"] for r, a in by_rule(conn, former).items()} == dict.fromkeys(
        technical, "open"
    )
    # still the same condition, but the device comes back to the office
    registry.end_assignment(conn, device_id, NOW + timedelta(minutes=5))
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=1))  # before the return
    assert {a["status"] for a in by_rule(conn, former).values()} == {"open"}
    counts = run_scheduled_evaluation(conn, NOW + timedelta(minutes=10))
    assert counts["resolved"] == 3
    got = by_rule(conn, former)
    assert {r: a["status"] for r, a in got.items()} == dict.fromkeys(technical, "resolved")
    for a in got.values():
        assert a["auto_resolved"] and a["resolved_by"] == "hemhub"
        assert a["resolution_note"] == (
            "device returned: C0:FF:EE:00:00:01 (assignment ended 2026-11-27T07:07Z)"
        )
    # the next resident gets the device, on a hub of their own, charged
    registry.ensure_tenant(conn, "kommun-a", "Kommun A")
    nxt = registry.create_patient(conn, "kommun-a", "Next resident", "hypertension")
    registry.assign_device(conn, device_id, nxt, NOW + timedelta(hours=1))
    home = unique_hub_id()
    charged = weak.model_copy(update={"battery_level": 95})
    post_status(conn, hub_status(home, health=charged), NOW + timedelta(hours=2))
    post_status(conn, hub_status(hub, online=False), NOW + timedelta(hours=2))  # unplugged
    run_scheduled_evaluation(conn, NOW + timedelta(hours=2))
    assert alerts_of(conn, nxt) == []
    assert {a["status"] for a in by_rule(conn, former).values()} == {"resolved"}


def test_returning_one_of_two_devices_clears_what_that_one_caused(
    conn: psycopg.Connection[Any],
) -> None:
    identity, patient = resident(conn)
    device_id = registry.device_id_by_stable_id(conn, identity.stable_id)
    assert device_id is not None
    scale = second_device(conn, patient, "WS-1", "C0:FF:EE:00:00:03")
    hub = unique_hub_id()
    weak = DeviceHealth(address=ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE, battery_level=12)
    # the scale reports no battery level at all
    unknown = DeviceHealth(address=scale.address, profile=DeviceProfile.WEIGHT_SCALE)
    post_status(conn, HubStatus(hub_id=hub, online=True, devices=[weak, unknown]), NOW)
    run_scheduled_evaluation(conn, NOW)
    assert by_rule(conn, patient)["device_battery_low"]["status"] == "open"
    registry.end_assignment(conn, device_id, NOW + timedelta(minutes=5))
    post_status(conn, HubStatus(hub_id=hub, online=True, devices=[unknown]), NOW)
    run_scheduled_evaluation(conn, NOW + timedelta(minutes=10))
    a = by_rule(conn, patient)["device_battery_low"]
    assert (a["status"], a["resolution_note"]) == (
        "resolved",
        "device returned: C0:FF:EE:00:00:01 (assignment ended 2026-11-27T07:07Z)",
    )


def test_migration_renames_robot_battery_alerts_only(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    """0004: alerts a robot event opened under the old shared name get the robot's rule."""
    _, robot_patient = resident(conn)
    _, hub_patient = resident(conn, serial="S-2")
    for patient, key in ((robot_patient, "k" * 64), (hub_patient, None)):
        conn.execute(
            "INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, reason,"
            " first_reading_key, measured_at) VALUES"
            " ('kommun-a', %s, 'device_battery_low', 1, 'low', 'old', %s, %s)",
            (patient, key, T0),
        )
    conn.execute("DELETE FROM schema_migrations WHERE version = '0004_dispenser_battery_rule'")
    assert migrate(database_url).applied == ["0004_dispenser_battery_rule"]
    assert list(by_rule(conn, robot_patient)) == ["dispenser_battery_low"]
    assert list(by_rule(conn, hub_patient)) == ["device_battery_low"]
