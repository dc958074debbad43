"""Weeks of measurements for the demo homes of a web stack, published as the homes'
hubs would publish a backlog (wire contract, MQTT QoS 1) and stored by the stack's real
ingest worker, which raises the alerts they call for."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg

from device_drivers.codecs.dispenser import DISPENSER_EVENT_UUID
from device_drivers.simulation.home import SimulatedDevice
from hemhub.contract import (
    ClockSource,
    ClockTrust,
    DeviceEvent,
    DeviceProfile,
    MeasurementType,
    Quantity,
    Reading,
    ReadingBatch,
    topic_readings,
)
from hemhub.demo import Home
from hemhub.settings import MqttTarget

#: A hub whose clock is not checked against internet time: as the demo's simulated hubs.
UNSYNCED = ClockTrust(source=ClockSource.OFFSET_MEASURED, offset_s=1.5, hub_clock_synced=False)


def _reading(
    device: SimulatedDevice,
    at: datetime,
    mtype: MeasurementType,
    characteristic: str,
    values: list[Quantity],
    event: DeviceEvent | None = None,
) -> Reading:
    identity = device.identity()
    key = hashlib.sha256(f"{identity.stable_id}|{at.isoformat()}|{mtype}".encode()).hexdigest()
    return Reading(
        idempotency_key=key,
        device=identity,
        measurement_type=mtype,
        characteristic=characteristic,
        values=values,
        event=event,
        device_time=at.replace(tzinfo=None),
        hub_received_at=at + timedelta(seconds=4),
        measured_at=at,
        clock=UNSYNCED,
        raw_hex=key[:16],
    )


def bp(
    device: SimulatedDevice, at: datetime, systolic: float, diastolic: float, pulse: float
) -> Reading:
    return _reading(
        device,
        at,
        MeasurementType.BLOOD_PRESSURE,
        "2A35",
        [
            Quantity(name="systolic", loinc="8480-6", value=systolic, unit="mm[Hg]"),
            Quantity(name="diastolic", loinc="8462-4", value=diastolic, unit="mm[Hg]"),
            Quantity(name="pulse_rate", loinc="8867-4", value=pulse, unit="/min"),
        ],
    )


def _extra(device: SimulatedDevice, at: datetime, day: int, days: int) -> Iterator[Reading]:
    if device.profile == DeviceProfile.WEIGHT_SCALE:
        # Steady, then 2.4 kg up over the last three days: the heart-failure trend.
        kg = 78.0 + (day % 3) * 0.2 + (max(0, day - (days - 4)) * 0.8)
        weight = Quantity(name="body_weight", loinc="29463-7", value=round(kg, 1), unit="kg")
        yield _reading(device, at, MeasurementType.BODY_WEIGHT, "2A9D", [weight])
    elif device.profile == DeviceProfile.PULSE_OXIMETER:
        spo2 = 93 - (day % 4) + (0 if day % 9 else -3)
        yield _reading(device, at, MeasurementType.PULSE_OXIMETRY, "2A5F", [
            Quantity(name="oxygen_saturation", loinc="2708-6", value=spo2, unit="%"),
            Quantity(name="pulse_rate", loinc="8867-4", value=78 + day % 6, unit="/min"),
        ])  # fmt: skip
    elif device.profile == DeviceProfile.GLUCOSE:
        mmol = round(6.5 + (day * 7 % 40) / 10, 1)
        glucose = Quantity(name="glucose", loinc="15074-8", value=mmol, unit="mmol/L")
        yield _reading(device, at, MeasurementType.GLUCOSE, "2A18", [glucose])
    elif device.profile == DeviceProfile.DISPENSER:
        due = at.replace(hour=7, minute=0)
        yield _reading(device, due, MeasurementType.MEDICATION_EVENT, DISPENSER_EVENT_UUID, [],
                       DeviceEvent(kind="dose_due", dose_id=day, slot=1))  # fmt: skip
        outcome = "dose_missed" if day % 6 == 5 else "dose_late" if day % 5 == 4 else "dose_taken"
        yield _reading(device, due + timedelta(minutes=40), MeasurementType.MEDICATION_EVENT,
                       DISPENSER_EVENT_UUID, [],
                       DeviceEvent(kind=outcome, dose_id=day, slot=1,
                                   needs_staff_attention=outcome == "dose_missed"))  # fmt: skip


def home_history(home: Home, days: int, now: datetime) -> list[Reading]:
    """`days` of a home's readings up to `now`: blood pressure morning and evening (a
    hypertensive resident now and then over the limits), and the home's other device."""
    hypertensive = home.scenario.devices[0].scenario == "hypertensive"
    out: list[Reading] = []
    for day in range(days):
        date = (now - timedelta(days=days - day)).replace(hour=0, minute=0, second=0, microsecond=0)
        for hour, shift in ((8, 0), (19, 6)):
            at = date + timedelta(hours=hour, minutes=(home.index * 7 + day) % 30)
            if at >= now:
                continue
            base = 158 if hypertensive else 128
            systolic = base + (day * 5 + shift) % 17 + (26 if hypertensive and day % 8 == 3 else 0)
            diastolic = (92 if hypertensive else 78) + (day * 3 + shift) % 9
            out.append(
                bp(home.scenario.devices[0], at, systolic, diastolic, 62 + (day + shift) % 15)
            )
        for device in home.scenario.devices[1:]:
            at = date + timedelta(hours=9, minutes=home.index * 3)
            if at < now:
                out.extend(r for r in _extra(device, at, day, days) if r.measured_at < now)
    return out


def publish(mqtt_url: str, hub_id: str, readings: list[Reading], per_message: int = 50) -> None:
    """Publish as the hub would (QoS 1, batches), waiting for each PUBACK."""
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{hub_id}-history")
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        for i in range(0, len(readings), per_message):
            payload = ReadingBatch(hub_id=hub_id, readings=readings[i : i + per_message])
            info = client.publish(topic_readings(hub_id), payload.model_dump_json(), qos=1)
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def wait_stored(database_url: str, keys: list[str], within_s: float = 60.0) -> None:
    """Until every key is stored (ingest dedupes by key, so this is exact)."""
    deadline = time.monotonic() + within_s
    while True:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM reading_keys WHERE idempotency_key = ANY(%s)", (keys,)
            ).fetchone()
        if row and row[0] == len(keys):
            return
        assert time.monotonic() < deadline, f"{row and row[0]} of {len(keys)} readings stored"
        time.sleep(0.3)


def publish_history(mqtt_url: str, database_url: str, homes: list[Home], days: int) -> datetime:
    """Every home's history, stored; returns the `now` it was made up to."""
    now = datetime.now(UTC).replace(microsecond=0)
    keys = []
    for home in homes:
        readings = home_history(home, days, now)
        publish(mqtt_url, home.hub_id, readings)
        keys += [r.idempotency_key for r in readings]
    wait_stored(database_url, keys)
    return now
