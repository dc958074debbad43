"""Response and request models of the nurse/integration API (v1)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api.auth import Role
from api.text import first_text_problem
from ingest.programmes import PROGRAMMES

#: The instants the API takes (query bounds, `applies_from`): readings come from devices
#: whose clocks may reset to 2000, but nothing clinical happened before 1900 or after 2199,
#: and a year-1 or year-9999 instant with an offset cannot even be converted to UTC.
MIN_YEAR, MAX_YEAR = 1900, 2199


def _sane_instant(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


#: The furthest a list can be paged into (PostgreSQL's OFFSET takes a bigint; no roster
#: is near this long).
MAX_OFFSET = 1_000_000

#: A timezone-aware instant in the years MIN_YEAR..MAX_YEAR.
Instant = Annotated[AwareDatetime, AfterValidator(_sane_instant)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    """A request body: unknown fields are refused, and so is any string (key or value,
    at any depth) PostgreSQL cannot store: a NUL character or a lone surrogate."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        found = first_text_problem(data)
        if found is not None:
            loc, problem = found
            where = ".".join(str(part) for part in loc) or "body"
            raise ValueError(f"{where}: {problem}")
        return data


class Health(_Out):
    status: Literal["ok"] = "ok"


class Ready(_Out):
    database: Literal["ok", "unreachable", "not migrated"]
    partitioning: Literal["native", "timescaledb"] | None = None
    #: Readings stored with no resident because no assignment covered their measurement
    #: time, all principals together; see GET /api/v1/fleet/unattributed for the breakdown.
    unattributed_readings: int | None = None
    #: Readings stored quarantined (the sending hub was not entitled to the device), all
    #: principals together; see GET /api/v1/fleet/security-events.
    quarantined_readings: int | None = None
    #: Messages ingest could not store (`dead_letters`: one per distinct message), the
    #: deliveries they amount to, and when the latest arrived: to alert on, and to look
    #: into with the reasons kept in the table.
    dead_letters: int | None = None
    dead_letter_deliveries: int | None = None
    last_dead_letter_at: datetime | None = None
    detail: str | None = None


class Me(_Out):
    sub: str
    role: Role
    tenant: str
    #: The token's `care_units` claim (None: the whole principal).
    care_units: list[uuid.UUID] | None = None
    #: The token's `name` claim, when the identity provider sends one.
    name: str | None = None
    #: The principal's IANA time zone: the web app shows every time in it.
    time_zone: str = "Europe/Stockholm"


class UiConfig(_Out):
    """What the web app needs before sign-in (GET /api/v1/ui-config)."""

    #: The OpenID Connect issuer URL; None: sign-in is not configured.
    issuer: str | None
    client_id: str
    scope: str
    default_language: Literal["sv", "en"]
    #: The demo identity provider signs users in (never in production).
    demo: bool


class Patient(_Out):
    id: uuid.UUID
    display_name: str
    programme: str
    #: Alerts in status "open" (not yet acknowledged by anyone).
    open_alerts: int
    #: The care unit the resident is placed in (None: in none, or shared by another).
    care_unit_id: uuid.UUID | None = None
    #: The resident's principal: the caller's own, or the one that shares the resident.
    principal: str
    #: When the resident was deactivated (None: active); listed only when asked for.
    deactivated_at: datetime | None = None


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
    #: The resident's principal: the caller's own, or the one that shares the resident.
    principal: str
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


class ResolveRequest(_In):
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


class ThresholdChange(_In):
    """A new version of a resident's thresholds: `rules` is a JSON merge patch (RFC 7396)
    over the version in force at `applies_from` (null removes a key)."""

    rules: dict[str, Any]
    #: From when the new version applies (default: now); may be in the past to correct.
    applies_from: Instant | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None


class CareUnit(_Out):
    id: uuid.UUID
    name: str
    created_at: datetime
    #: Residents placed in the unit.
    residents: int


class CareUnitCreate(_In):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class CareUnitPlacement(_In):
    """Place a resident in a care unit of the principal; `null` takes it out of any."""

    care_unit_id: uuid.UUID | None


class PatientCareUnit(_Out):
    patient_id: uuid.UUID
    care_unit_id: uuid.UUID | None


class UnattributedDevice(_Out):
    """Readings of one device through one hub that no assignment period covered."""

    device_id: uuid.UUID
    address: str
    manufacturer: str | None
    model: str | None
    serial: str | None
    hub_id: str
    #: Why the readings were not attributed: null, no assignment covered them (the hub
    #: was entitled); else quarantined, the hub was not entitled to the device:
    #: `unknown_hub`, `other_principal` or `hub_not_entitled` (docs/ingest.md).
    quarantine: str | None
    readings: int
    first_measured_at: datetime
    last_measured_at: datetime


class SecurityEvent(_Out):
    """A write no principal allowed (a hub writing for a device it was not entitled to)."""

    id: int
    at: datetime
    #: reading_quarantined
    kind: str
    #: unknown_hub | other_principal | hub_not_entitled
    reason: str
    hub_id: str
    #: The sending hub's principal (null: a hub never registered).
    hub_tenant_id: str | None
    device_id: uuid.UUID
    readings: int
    first_measured_at: datetime
    last_measured_at: datetime
    detail: str


class SecurityEvents(_Out):
    """A page of security events of the caller's principal's devices, newest first."""

    events: list[SecurityEvent]
    #: Pass as `before` for the next (older) page; null: this was the last page.
    next_before: int | None


class Unattributed(_Out):
    """Unattributed readings of the devices the caller's principal owns (its fleet)."""

    since: datetime | None
    #: Readings in `devices` together.
    total: int
    devices: list[UnattributedDevice]


class AlertStreamEvent(_Out):
    """`data` of an `alert` event of GET /api/v1/alerts/stream."""

    #: opened | updated | acknowledged | resolved
    event: str
    #: The alert as GET /api/v1/alerts shows it, read when the event was delivered.
    alert: Alert


# --- residents (registry: administrative data, no clinical values) -------------------------

MeasurementTypeName = Literal[
    "blood_pressure", "body_weight", "pulse_oximetry", "glucose", "medication_event"
]


def _programme(value: str) -> str:
    if value not in PROGRAMMES:
        raise ValueError(f"unknown programme (one of: {', '.join(PROGRAMMES)})")
    return value


#: A care programme (ingest.programmes): it chooses the default alert thresholds.
Programme = Annotated[str, AfterValidator(_programme)]
DisplayName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]


class Schedule(_Out):
    """A measurement the resident is expected to take, and how often (missing-data rules)."""

    measurement_type: str
    every: timedelta
    starts_at: datetime
    active: bool
    created_by: str
    created_at: datetime


class Resident(_Out):
    """A resident's administrative record: no readings, no alerts."""

    id: uuid.UUID
    principal: str
    display_name: str
    programme: str
    care_unit_id: uuid.UUID | None
    created_at: datetime
    deactivated_at: datetime | None
    deactivated_by: str | None
    deactivation_reason: str | None
    schedules: list[Schedule]


class ResidentCreate(_In):
    display_name: DisplayName
    programme: Programme = "hypertension"
    care_unit_id: uuid.UUID | None = None


class ResidentUpdate(_In):
    """What to change (at least one field); a programme change moves the resident to that
    programme's default thresholds (its own overrides stay)."""

    display_name: DisplayName | None = None
    programme: Programme | None = None

    @model_validator(mode="after")
    def _something(self) -> ResidentUpdate:
        if self.display_name is None and self.programme is None:
            raise ValueError("nothing to change: give display_name and/or programme")
        return self


class ScheduleSet(_In):
    """Expect the measurement every `every` (ISO 8601 duration, e.g. "P1D", or seconds)."""

    every: timedelta
    starts_at: Instant | None = None

    @model_validator(mode="after")
    def _sane(self) -> ScheduleSet:
        if not timedelta(minutes=5) <= self.every <= timedelta(days=92):
            raise ValueError("every must be between 5 minutes and 92 days")
        return self


class Deactivation(_In):
    reason: Reason


# --- principals and sharing ----------------------------------------------------------------

#: A principal's id (tenants.id): what tokens carry in their `tenant` claim.
PrincipalId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PrincipalName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class PrincipalOut(_Out):
    id: str
    name: str
    created_at: datetime


class PrincipalCreate(_In):
    id: PrincipalId
    name: PrincipalName


class PrincipalRename(_In):
    name: PrincipalName


class CareUnitRename(_In):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class Share(_Out):
    """A grant of one resident by its principal (`owner`) to another (`grantee`)."""

    id: uuid.UUID
    patient_id: uuid.UUID
    patient_display_name: str
    owner: str
    grantee: str
    purpose: str
    reason: str
    #: The period shared: the grantee sees the resident while now is in it, and of its
    #: readings and alerts those measured in it.
    starts_at: datetime
    ends_at: datetime
    granted_by: str
    granted_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None
    #: Not revoked and now within [starts_at, ends_at).
    in_force: bool


class ShareCreate(_In):
    grantee: PrincipalId
    #: What the grantee may use it for (e.g. "home care", "primary care follow-up").
    purpose: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
    #: Why it is granted (consent, care decision): recorded with the grant.
    reason: Reason
    #: Default: now.
    starts_at: Instant | None = None
    ends_at: Instant


class Revocation(_In):
    reason: Reason
