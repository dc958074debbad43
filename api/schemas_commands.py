"""Bodies and answers of the hub-command endpoints (api/routers/hub_commands.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hemhub.contract import HUB_ID_PATTERN, DeviceProfile


class DeviceWipeRequest(BaseModel):
    """Ask (again) for a device's data reset. Without `hub_id`: the hub of the principal
    that last had the device on its allow-list. Without `profile`: the device's own
    (product, allow-list, or what a hub reported)."""

    model_config = ConfigDict(extra="forbid")

    hub_id: str | None = Field(default=None, pattern=HUB_ID_PATTERN)
    profile: DeviceProfile | None = None


class HubCommand(BaseModel):
    """A command to a hub and where it stands; `status` is `pending` until the hub
    reported (`wiped`, `unsupported` or `failed`, with `reason`)."""

    command_id: uuid.UUID
    hub_id: str
    kind: Literal["wipe_device", "forget_device", "wipe_hub"]
    device_id: uuid.UUID | None = None
    address: str | None = None
    profile: str | None = None
    status: Literal["pending", "wiped", "unsupported", "failed"]
    reason: str | None = None
    requested_by: str
    requested_at: datetime
    #: When the broker took the command (the hub link's PUBACK); None: not yet sent.
    published_at: datetime | None = None
    finished_at: datetime | None = None
    #: The hub's result as sent (bond_removed, records_before, ...).
    result: dict[str, Any] | None = None
