"""Request and response models of the HMC's rollouts: artifacts, campaigns (v1)."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from api.schemas import _In, _Out
from hemhub.contract import TargetName, VersionText

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]
ZoneName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$")]


class ArtifactCreate(_In):
    kind: Literal["hub_software", "device_firmware"]
    version: VersionText
    #: Its target name in the update repository (hub software: hemhub-hub-<version>.tar).
    target: TargetName
    #: The device model (product) a firmware image is for; none for hub software.
    product_id: uuid.UUID | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    length: Annotated[int, Field(ge=1)] | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None


class Artifact(_Out):
    id: uuid.UUID
    kind: str
    version: str
    target: str
    product_id: uuid.UUID | None
    sha256: str | None
    length: int | None
    notes: str | None
    created_at: datetime
    created_by: str


class Window(_In):
    """Local time of the home: [start, end), may span midnight (22:00-05:00)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("a window's start and end differ")
        return self


class CampaignCreate(_In):
    name: Name
    artifact_id: uuid.UUID
    #: Cumulative percentages of the targets per wave; the first is the canary (at least
    #: one target), the last 100.
    waves: Annotated[
        list[Annotated[int, Field(ge=1, le=100)]], Field(min_length=1, max_length=10)
    ] = [
        1,
        10,
        50,
        100,
    ]
    window: Window | None = None
    #: The zone of the window for hubs without a zone of their own.
    time_zone: ZoneName = "UTC"
    max_parallel: Annotated[int, Field(ge=1, le=100000)] = 50
    confirm_timeout_s: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600
    margin_failed_sessions: Annotated[int, Field(ge=0, le=1000)] = 2
    margin_error_readings: Annotated[int, Field(ge=0, le=1000)] = 0
    #: A confirmed target that reports nothing for longer than this fails the health
    #: gate (default: 900 s for hub software, 86400 s for device firmware).
    silence_window_s: Annotated[int, Field(ge=10, le=30 * 86400)] | None = None
    #: Whom: the caller's principal always; narrowed by these.
    care_unit_id: uuid.UUID | None = None
    model: uuid.UUID | None = None
    hardware_revision: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    current_version: VersionText | None = None


class Campaign(_Out):
    id: uuid.UUID
    name: str
    artifact_id: uuid.UUID
    kind: str
    version: str
    target: str
    selector: dict[str, Any]
    waves: list[int]
    wave: int
    window_start: time | None
    window_end: time | None
    time_zone: str
    max_parallel: int
    confirm_timeout_s: int
    margin_failed_sessions: int
    margin_error_readings: int
    #: None: a campaign from before the silence gate (not checked).
    silence_window_s: int | None = None
    state: str
    paused_reason: str | None
    targets: int
    target_states: dict[str, int] | None
    created_at: datetime
    created_by: str
    updated_at: datetime


class CampaignTarget(_Out):
    hub_id: str
    #: The device (firmware campaigns); empty for hub software.
    address: str
    wave: int
    state: str
    from_version: str | None
    running: str | None
    online: bool | None
    #: The update progress the hub reports (UpdateProgress of the wire contract).
    progress: dict[str, Any] | None
    issued_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    #: When it last reported (the hub's status; the device seen or read by its hub): the
    #: health gate's silence window counts from here.
    last_report_at: datetime | None = None


class CampaignEvent(_Out):
    at: datetime
    by_subject: str
    kind: str
    detail: dict[str, Any] | None


class PauseBody(_In):
    reason: Reason


class ReasonBody(_In):
    reason: Reason | None = None


class HubTimeZone(_In):
    #: An IANA zone (Europe/Stockholm); null: the campaign's own zone.
    time_zone: ZoneName | None


class HubTimeZoneOut(_Out):
    hub_id: str
    time_zone: str | None
