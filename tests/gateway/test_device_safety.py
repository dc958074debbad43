"""`safe_to_update`: when the hub may update a device's firmware (a pure function)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.update.device_safety import DeviceSituation, SafetyPolicy, safe_to_update

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
CUFF = DeviceSituation("C4:00:00:00:00:01", "blood_pressure", "r1", battery_level=80)
DISPENSER = DeviceSituation("C4:00:00:00:00:02", "dispenser", "r1", battery_level=80)
METER = DeviceSituation("C4:00:00:00:00:03", "glucose", "r1", battery_level=80)
METER_2 = DeviceSituation("C4:00:00:00:00:04", "glucose", "r1", battery_level=80)


def test_an_idle_charged_device_may_be_updated() -> None:
    assert safe_to_update(CUFF, now=NOW, household=[CUFF, METER]) == (True, "")


def test_not_while_measuring() -> None:
    assert safe_to_update(replace(CUFF, measuring=True), now=NOW) == (
        False,
        "measurement in progress",
    )


def test_battery_floor() -> None:
    assert safe_to_update(replace(CUFF, battery_level=None), now=NOW) == (
        False,
        "battery level unknown",
    )
    assert safe_to_update(replace(CUFF, battery_level=49), now=NOW) == (
        False,
        "battery 49 % below the floor of 50 %",
    )
    assert safe_to_update(replace(CUFF, battery_level=50), now=NOW)[0]
    policy = SafetyPolicy(battery_floor=30)
    assert safe_to_update(replace(CUFF, battery_level=35), now=NOW, policy=policy)[0]


def test_no_dose_due_within_the_window() -> None:
    soon = replace(DISPENSER, next_dose_at=NOW + timedelta(minutes=40))
    assert safe_to_update(soon, now=NOW) == (False, f"dose due at {soon.next_dose_at.isoformat()}")  # type: ignore[union-attr]
    overdue = replace(DISPENSER, next_dose_at=NOW - timedelta(minutes=5))
    assert not safe_to_update(overdue, now=NOW)[0]
    later = replace(DISPENSER, next_dose_at=NOW + timedelta(hours=3))
    assert safe_to_update(later, now=NOW) == (True, "")
    narrow = SafetyPolicy(dose_window=timedelta(minutes=30))
    assert safe_to_update(soon, now=NOW, policy=narrow)[0]
    # Only a dispenser has doses.
    assert safe_to_update(replace(CUFF, next_dose_at=NOW), now=NOW)[0]


def test_one_device_of_a_kind_at_a_time_per_resident() -> None:
    updating = replace(METER_2, update_pending=True)
    assert safe_to_update(METER, now=NOW, household=[METER, updating]) == (
        False,
        "another glucose device of the resident is being updated",
    )
    # Another resident's meter being updated does not matter.
    elsewhere = replace(updating, resident="r2")
    assert safe_to_update(METER, now=NOW, household=[METER, elsewhere])[0]


def test_the_only_device_of_a_kind_depended_on_with_a_pending_update() -> None:
    pending = replace(METER, update_pending=True)
    assert safe_to_update(pending, now=NOW, household=[pending], depends_on={"glucose"}) == (
        False,
        "the resident's only glucose device, with an update of it still pending",
    )
    # Not depended on, or a second meter: allowed.
    assert safe_to_update(pending, now=NOW, household=[pending])[0]
    assert safe_to_update(pending, now=NOW, household=[pending, METER_2], depends_on={"glucose"})[0]
    # With no update pending, the only meter may be updated.
    assert safe_to_update(METER, now=NOW, household=[METER], depends_on={"glucose"})[0]


situations = st.builds(
    DeviceSituation,
    address=st.sampled_from(["C4:00:00:00:00:01", "C4:00:00:00:00:02", "C4:00:00:00:00:03"]),
    kind=st.sampled_from(["blood_pressure", "glucose", "dispenser"]),
    resident=st.sampled_from([None, "r1", "r2"]),
    battery_level=st.one_of(st.none(), st.integers(0, 100)),
    measuring=st.booleans(),
    next_dose_at=st.one_of(
        st.none(), st.integers(-600, 600).map(lambda m: NOW + timedelta(minutes=m))
    ),
    update_pending=st.booleans(),
)


@given(situations, st.lists(situations, max_size=4))
def test_every_refusal_has_a_reason_and_the_rules_hold(
    device: DeviceSituation, household: list[DeviceSituation]
) -> None:
    ok, reason = safe_to_update(device, now=NOW, household=household, depends_on={"glucose"})
    assert ok == (reason == "")
    if ok:
        assert not device.measuring
        assert device.battery_level is not None and device.battery_level >= 50
        if device.kind == "dispenser" and device.next_dose_at is not None:
            assert device.next_dose_at > NOW + timedelta(hours=1)
