"""Builders of valid wire-contract payloads for tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from hemhub.contract import (
    ClockSource,
    ClockTrust,
    DeviceIdentity,
    MeasurementType,
    Quantity,
    Reading,
    ReadingBatch,
)


def unique_hub_id(prefix: str = "test-hub") -> str:
    """Tests share one real broker: every test uses hub ids of its own."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def device(serial: str = "BP-0001", address: str = "C0:FF:EE:00:00:01") -> DeviceIdentity:
    return DeviceIdentity(
        address=address, manufacturer="Acme", model="BP-1", serial=serial, firmware="1.0"
    )


def bp_reading(
    systolic: float | None = 120.0,
    diastolic: float | None = 80.0,
    *,
    measured_at: datetime | None = None,
    received_at: datetime | None = None,
    dev: DeviceIdentity | None = None,
    pulse: float | None = 70.0,
    salt: str = "",
) -> Reading:
    measured_at = measured_at or datetime.now(UTC).replace(microsecond=0)
    received_at = received_at or measured_at + timedelta(seconds=5)
    dev = dev or device()
    raw = f"{dev.stable_id}|{systolic}|{diastolic}|{measured_at.isoformat()}|{salt}".encode()
    return Reading(
        idempotency_key=hashlib.sha256(raw).hexdigest(),
        device=dev,
        measurement_type=MeasurementType.BLOOD_PRESSURE,
        characteristic="2A35",
        values=[
            Quantity(name="systolic", loinc="8480-6", value=systolic, unit="mm[Hg]"),
            Quantity(name="diastolic", loinc="8462-4", value=diastolic, unit="mm[Hg]"),
            Quantity(name="pulse", loinc="8867-4", value=pulse, unit="/min"),
        ],
        device_time=measured_at.replace(tzinfo=None),
        hub_received_at=received_at,
        measured_at=measured_at,
        clock=ClockTrust(source=ClockSource.SET_BY_HUB, hub_clock_synced=True),
        raw_hex=raw.hex()[:1024],
    )


def batch(hub_id: str, *readings: Reading) -> ReadingBatch:
    return ReadingBatch(hub_id=hub_id, readings=list(readings))
