"""Response models of fleet health (hubs, their devices, history) and the follow-up
figures. No clinical values: statuses carry none, error readings are counted only."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class HubState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    #: Registered, but no status ever came.
    UNKNOWN = "unknown"


class HubHealth(_Out):
    hub_id: str
    state: HubState
    #: Since when the hub has been in `state` (its last transition; None: unknown).
    state_since: datetime | None
    #: When the hub last said it was online (received time).
    last_seen_at: datetime | None
    #: When the last status or last will was received.
    last_status_at: datetime | None
    software_version: str | None
    #: The configuration version the hub says it applied, and the newest one issued to
    #: it (None: none yet); they differ until the hub has taken the new one.
    config_version: int | None
    config_version_issued: int | None
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    disk_free_bytes: int | None
    alarms: list[str]
    #: Devices the hub's status lists, the lowest battery among them, and how many are
    #: failing (their last sessions failed).
    devices: int
    lowest_battery: int | None
    failing_devices: int


class HubList(_Out):
    #: Hubs matching the filters (all pages).
    total: int
    hubs: list[HubHealth]
    #: Pass as `after` for the next page (None: this is the last).
    next_after: str | None


class DeviceHealth(_Out):
    address: str
    profile: str
    #: The registry's device on this hub's allow-list with that address, if any.
    device_id: uuid.UUID | None
    manufacturer: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    #: The last BLE session (seen) and the last reading the hub got from it.
    last_seen_at: datetime | None
    last_reading_at: datetime | None
    rssi: int | None
    battery_level: int | None
    sessions_failed: int
    consecutive_failures: int
    last_error: str | None
    #: Readings the device flagged as its own fault in the last 30 days (no values).
    error_readings_30d: int
    reported_at: datetime


class HubDetail(_Out):
    hub: HubHealth
    device_health: list[DeviceHealth]


class HistoryEntry(_Out):
    at: datetime
    hub_id: str
    address: str | None
    #: What changed (online, offline, software, config; new, removed, firmware,
    #: battery_low, battery_ok, failing, recovered, error), or ["sample"].
    reasons: list[str]
    snapshot: dict[str, Any]


class History(_Out):
    entries: list[HistoryEntry]


class FigureTable(_Out):
    """One follow-up figure (api/figures.py): its rows, each with `columns`."""

    figure: str
    title: str
    start: datetime
    end: datetime
    columns: list[str]
    rows: list[dict[str, Any]]
