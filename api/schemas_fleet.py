"""Request and response models of the HMC's fleet: products, devices, hubs (v1)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, computed_field

from api.schemas import Instant, _In, _Out
from hemhub.contract import HUB_ID_PATTERN
from ingest.device_life import ONLY_LOST_FROM, RetiredAs, State, allowed

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]
ShortText = Annotated[str, Field(min_length=1, max_length=128)]
Kind = Literal["blood_pressure", "weight_scale", "pulse_oximeter", "glucose", "dispenser", "hub"]
HubId = Annotated[str, Field(pattern=HUB_ID_PATTERN)]


class ProductCreate(_In):
    kind: Kind
    manufacturer: Name
    model: Name
    #: The device profiles it speaks (default: its kind; none for a hub).
    profiles: Annotated[list[Kind], Field(max_length=8)] | None = None
    #: What a hub must know, e.g. {"bond": true}: pair before reading (docs/devices.md).
    quirks: dict[str, Any] | None = None
    firmware_line: ShortText | None = None


class Product(_Out):
    id: uuid.UUID
    kind: str
    manufacturer: str
    model: str
    profiles: list[str]
    quirks: dict[str, Any]
    firmware_line: str | None
    created_at: datetime


class DeviceRegister(_In):
    product_id: uuid.UUID
    serial: ShortText
    #: The radio address (AA:BB:CC:DD:EE:FF).
    address: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    #: As the device reports them in Device Information, when not the product's names.
    manufacturer: ShortText | None = None
    model: ShortText | None = None
    hardware_revision: ShortText | None = None
    firmware: ShortText | None = None


class _Life(_Out):
    """What a device or hub in its state may become: what a page offers, from the one
    state machine (ingest.device_life); the API still judges each request."""

    state: State

    @computed_field  # type: ignore[prop-decorator]
    @property
    def next_states(self) -> list[State]:
        """In the order of a life (assigned before retired)."""
        return [s for s in State if s in allowed(self.state)]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retire_as(self) -> list[RetiredAs]:
        """How it may be retired now (only lost while not at the HMC); empty: it may not."""
        if State.RETIRED not in allowed(self.state):
            return []
        return [RetiredAs.LOST] if self.state in ONLY_LOST_FROM else list(RetiredAs)


class Device(_Life):
    id: uuid.UUID
    stable_id: str
    serial: str | None
    address: str
    manufacturer: str | None
    model: str | None
    firmware: str | None
    hardware_revision: str | None
    product_id: uuid.UUID | None
    kind: str | None
    owner: str | None
    state: State
    registered_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime
    #: The resident the device serves now, and since when (assigned only).
    patient_id: uuid.UUID | None
    assigned_from: datetime | None
    hub_id: str | None
    #: Returned or in quarantine: the data reset asked at the return, as the hub reported
    #: it (none, pending, wiped, unsupported, failed). Shown for one device only.
    data_reset: str | None = None


class DeviceAssign(_In):
    patient_id: uuid.UUID
    hub_id: HubId
    #: From when the resident's readings are attributed (default: now).
    from_: Annotated[Instant | None, Field(alias="from")] = None
    reason: Reason | None = None


class Return(_In):
    #: Until when the resident's readings are attributed (default: now).
    until: Instant | None = None
    reason: Reason | None = None


class StateChange(_In):
    to: State
    reason: Reason | None = None
    #: lost, broken or scrapped (to retired only).
    retired_as: RetiredAs | None = None
    #: quarantine -> in_stock without a confirmed data reset (a reason is required).
    override: bool = False


class Change(_Out):
    id: int
    from_state: str | None
    to_state: str
    at: datetime
    by_subject: str
    by_tenant: str
    reason: str | None
    detail: dict[str, Any] | None


class HubRegister(_In):
    id: HubId
    product_id: uuid.UUID | None = None
    serial: ShortText | None = None


class Hub(_Life):
    id: str
    state: State
    serial: str | None
    product_id: uuid.UUID | None
    created_at: datetime
    online: bool | None
    last_status_at: datetime | None
    software_version: str | None
    #: The newest configuration issued, and the one the hub's status says is in force.
    config_version_wanted: int
    config_version_confirmed: int | None
    config_in_force: bool
    #: The resident at whose home it stands, and since when.
    patient_id: uuid.UUID | None
    placed_from: datetime | None
    credentials_issued_at: datetime | None
    credentials_issued_by: str | None
    devices: int


class HubPlace(_In):
    patient_id: uuid.UUID
    from_: Annotated[Instant | None, Field(alias="from")] = None
    reason: Reason | None = None


class Credentials(_Out):
    hub_id: str
    username: str
    #: Shown once: only its hash is kept. Give it to the hub (mqtt_password_file).
    password: str
    issued_at: datetime
    #: The broker takes it once an operator rewrote its password file (docs/operations.md).
    note: str = (
        "shown once; the broker accepts it after `hemhub broker-passwd` rewrote its password"
        " file and the broker was reloaded"
    )


class Revoke(_In):
    reason: Reason | None = None


class Revoked(_Out):
    hub_id: str
    issued_at: datetime
    revoked_at: datetime


class HubConfigIssued(_Out):
    version: int
    issued_at: datetime
    issued_by: str
    payload: dict[str, Any]
