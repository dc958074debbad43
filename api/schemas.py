"""Response and request models of the nurse/integration API (v1)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    #: The reason of the latest repetition (`reason` is the one that opened the alert).
    last_reason: str | None = None
    #: Resolved by the engine because its condition cleared (resolved_by "hemhub").
    auto_resolved: bool = False
    #: The threshold set whose version is `rule_version`; None for the programme profile.
    threshold_set_id: uuid.UUID | None = None
    #: The reading the values come from: the last repetition, else the one that opened it.
    reading_id: str | None
    #: That reading's values; None when the reading is not (or no longer) stored.
    values: list[Quantity] | None


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=2000)] | None = None


class ThresholdVersion(_Out):
    version: int
    threshold_set_id: uuid.UUID
    applies_from: datetime
    created_by: str
    created_at: datetime
    note: str | None


class Thresholds(_Out):
    """The alert thresholds in force for a resident at an instant, and their version."""

    patient_id: uuid.UUID
    programme: str
    version: int
    #: "programme": the programme's built-in profile; "patient": an override
    source: Literal["programme", "patient"]
    #: The override; None for the programme profile.
    threshold_set_id: uuid.UUID | None
    created_by: str
    created_at: datetime | None
    applies_from: datetime | None
    note: str | None
    #: The threshold document (see docs/alerts.md).
    rules: dict[str, Any]
    #: The resident's overrides, newest version first.
    history: list[ThresholdVersion]


class ThresholdChange(BaseModel):
    """A new version of a resident's thresholds: `rules` is a JSON merge patch (RFC 7396)
    over the version in force at `applies_from` (null removes a key)."""

    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any]
    #: From when the new version applies (default: now); may be in the past to correct.
    applies_from: AwareDatetime | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None
