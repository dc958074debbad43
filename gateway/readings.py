"""From what a driver received to a wire-contract Reading, with its idempotency key."""

from __future__ import annotations

import hashlib
from datetime import tzinfo

from device_drivers.codecs.registry import record_identity
from device_drivers.drivers.session import ReceivedMeasurement
from gateway.clock import measurement_time
from hemhub.contract import DeviceIdentity, Reading


def idempotency_key(
    identity: DeviceIdentity, characteristic: str, raw: bytes, sequence: int | None = None
) -> str:
    """A key that is the same every time a device sends the same stored record.

    A record is identified by the device's stable identity, the characteristic, the
    device's record number where the profile has one (glucose meters, dispensers) and
    the record's bytes (which include its device timestamp where it has one) without
    the bits that say how it travelled (`record_identity`: e.g. a dispenser's "sent from
    storage"), so an event received live and again from storage has one key. Nothing the
    hub adds on receipt is part of it, so a backlog replayed on every connection keeps
    its keys and is stored once. A record without transport bits set has the key it had
    before transport bits were masked (ingest/sql/0007 adds the new keys of the others).

    Known limit: a device whose records carry neither a timestamp nor a record number
    cannot tell the hub that two byte-identical readings are two measurements. They get
    one key and are stored once (the hub also remembers delivered keys for 30 days).
    """
    h = hashlib.sha256()
    record_number = "" if sequence is None else str(sequence)
    record = record_identity(characteristic, raw).hex()
    for part in (identity.stable_id, characteristic, record, record_number):
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
    return Reading(
        idempotency_key=idempotency_key(
            received.identity, received.characteristic, received.raw, received.sequence
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
