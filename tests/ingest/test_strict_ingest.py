"""Through real ingest (Mosquitto, IngestWorker, PostgreSQL): a wrong-typed value is
dead-lettered with the field named, stores nothing and opens no alert (issue 11: a
systolic "205" was stored and alerted, true became 1 mmHg, SpO2 true became 1 %)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from hemhub.contract import MeasurementType, Quantity, topic_readings
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import alerts_of, readings_of_hub, seeded_device
from tests.ingest.test_worker import Publisher, Running, count, start_worker, wait_for

__all__ = ["start_worker"]  # the fixture, imported for this module's tests

NOW = datetime.now(UTC).replace(microsecond=0)


def with_value(payload: str, reading: int, quantity: int, value: Any) -> str:
    doc = json.loads(payload)
    doc["readings"][reading]["values"][quantity]["value"] = value
    return json.dumps(doc)


def test_wrong_typed_values_are_dead_lettered_and_open_no_alert(
    db: psycopg.Connection[Any],
    database_url: str,
    publisher: Publisher,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id("strict")
    identity, _, patient = seeded_device(
        db, serial=hub, assigned_from=NOW - timedelta(days=1), hub_id=hub
    )
    running = start_worker(database_url, topics=[topic_readings(hub)])
    topic = topic_readings(hub)

    def bp(salt: str) -> str:
        return batch(
            hub, bp_reading(205, 120, measured_at=NOW, dev=identity, salt=salt)
        ).model_dump_json()

    oximetry = bp_reading(measured_at=NOW, dev=identity, salt="spo2").model_copy(
        update={
            "measurement_type": MeasurementType.PULSE_OXIMETRY,
            "values": [Quantity(name="oxygen_saturation", loinc="2708-6", value=97.0, unit="%")],
        }
    )
    with_sequence = bp_reading(120, 80, measured_at=NOW, dev=identity, salt="seq").model_copy(
        update={"device_sequence": 7}
    )

    def sequence(value: Any) -> str:
        doc = json.loads(batch(hub, with_sequence).model_dump_json())
        doc["readings"][0]["device_sequence"] = value
        return json.dumps(doc)

    hostile = {
        'systolic "205"': (with_value(bp("s"), 0, 0, "205"), "readings.0.values.0.value"),
        "systolic true": (with_value(bp("t"), 0, 0, True), "readings.0.values.0.value"),
        "systolic false": (with_value(bp("f"), 0, 0, False), "readings.0.values.0.value"),
        "SpO2 true": (
            with_value(batch(hub, oximetry).model_dump_json(), 0, 0, True),
            "readings.0.values.0.value",
        ),
        "sequence 1.5": (sequence(1.5), "readings.0.device_sequence"),
        "sequence 7.0": (sequence(7.0), "readings.0.device_sequence"),
        'sequence "7"': (sequence("7"), "readings.0.device_sequence"),
        "sequence true": (sequence(True), "readings.0.device_sequence"),
    }
    for payload, _ in hostile.values():
        publisher.publish(topic, payload)
    # then a valid hypertensive reading: stored and alerted, the worker is fine
    valid = bp_reading(190, 110, measured_at=NOW, dev=identity, salt="valid")
    publisher.publish(topic, batch(hub, valid).model_dump_json())
    wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 1, what="the valid reading")
    wait_for(
        lambda: count(db, "SELECT count(*) FROM dead_letters") == len(hostile),
        what="every wrong-typed payload dead-lettered",
    )

    [row] = readings_of_hub(db, hub)
    assert row["idempotency_key"] == valid.idempotency_key
    reasons = {
        bytes(p).decode(): r
        for r, p in db.execute("SELECT reason, payload FROM dead_letters").fetchall()
    }
    for what, (payload, field) in hostile.items():
        assert payload in reasons, what
        assert f"{field}: Input should be a valid" in reasons[payload], (what, reasons[payload])
    # one alert, the valid reading's; nothing from the dead letters
    [alert] = alerts_of(db, patient)
    assert (alert["rule"], alert["count"], alert["first_reading_key"]) == (
        "blood_pressure_high",
        1,
        valid.idempotency_key,
    )
    assert running.worker.stats["dead_letters"] == len(hostile)
