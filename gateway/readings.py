"""From what a driver received to a wire-contract Reading, with its idempotency key."""

from __future__ import annotations

import hashlib
from datetime import tzinfo

from device_drivers.drivers.session import ReceivedMeasurement
from gateway.clock import measurement_time
from hemhub.contract import DeviceIdentity, Reading


def idempotency_key(
    identity: DeviceIdentity, characteristic: str, raw: bytes, received: str
) -> str:
    """A key that is the same every time a device sends the same stored record.

    Records with a device timestamp are identified by their bytes (which include it):
    a backlog replayed on every connection keeps its key. A record without a timestamp
    cannot be told from a later identical one, so the hub's receive time joins the key.
    """
    h = hashlib.sha256()
    for part in (identity.stable_id, characteristic, raw.hex(), received):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def to_reading(received: ReceivedMeasurement, *, zone: tzinfo, synced: bool) -> Reading:
    m = received.measurement
    when = measurement_time(
        m.timestamp,
        received.received_at,
        clock_written=received.clock_written,
        device_clock_offset_s=received.device_clock_offset_s,
        device_clock_at_connect=received.device_clock_at_connect,
        zone=zone,
        synced=synced,
    )
    status = m.status_names()
    if m.is_device_error:
        status = ["device_error", *status]
    receipt = "" if m.timestamp is not None else received.received_at.isoformat()
    return Reading(
        idempotency_key=idempotency_key(
            received.identity, received.characteristic, received.raw, receipt
        ),
        device=received.identity,
        measurement_type=received.measurement_type,
        characteristic=received.characteristic,
        values=m.quantities(),
        status=status,
        device_time=m.timestamp,
        hub_received_at=received.received_at,
        measured_at=when.measured_at,
        clock=when.clock,
        raw_hex=received.raw.hex(),
        device_sequence=received.sequence,
        event=received.event,
    )
