"""Response and request models of the nurse/integration API (v1)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.auth import Role


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Out):
    status: Literal["ok"] = "ok"


class Ready(_Out):
    database: Literal["ok", "unreachable", "not migrated"]
    partitioning: Literal["native", "timescaledb"] | None = None
    detail: str | None = None


class Me(_Out):
    sub: str
    role: Role
    tenant: str


class Patient(_Out):
    id: uuid.UUID
    display_name: str
    programme: str
    #: Alerts in status "open" (not yet acknowledged by anyone).
    open_alerts: int


class Quantity(_Out):
    """One coded value of a reading (LOINC + UCUM); None when the device sent a special value."""

    name: str
    loinc: str
    value: float | None
    unit: str


class Device(_Out):
    address: str
    model: str | None
    serial: str | None


class Clock(_Out):
    #: set_by_hub | offset_measured | no_device_time (see hemhub.contract.ClockSource)
    source: str
    offset_s: float
    hub_clock_synced: bool


class DeviceEvent(_Out):
    kind: str
    dose_id: int | None = None
    slot: int | None = None
    needs_staff_attention: bool = False


class Observation(_Out):
    #: The reading's idempotency key: stable across retries and replays.
    id: str
    measured_at: datetime
    measurement_type: str
    values: list[Quantity]
    status: list[str]
    device: Device
    hub_id: str
    clock: Clock
    late: bool
    raw_hex: str
    #: The device's own record number (glucose meters, medication robots).
    device_sequence: int | None = None
    #: A device event instead of values (medication robots): kind, dose, staff attention.
    event: DeviceEvent | None = None


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Alert(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    patient_display_name: str
    rule: str
    rule_version: int
    severity: Literal["critical", "high", "medium", "low"]
    status: AlertStatus
    reason: str
    count: int
    measured_at: datetime
    late: bool
    opened_at: datetime
    last_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None
    #: The reading the values come from: the last repetition, else the one that opened it.
    reading_id: str | None
    #: That reading's values; None when the reading is not (or no longer) stored.
    values: list[Quantity] | None


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=2000)] | None = None
