"""The hub's configuration: its identity, its broker, and the devices it may talk to."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hemhub.contract import HubId

Profile = Literal["blood_pressure"]


class AllowedDevice(BaseModel):
    """A device on the hub's allow-list; anything else that advertises is ignored."""

    model_config = ConfigDict(extra="forbid")

    address: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    profile: Profile
    #: Pair (Just Works) before reading: many cuffs only indicate to a bonded central.
    bond: bool = False

    @field_validator("address")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hub_id: HubId
    mqtt_url: str
    data_dir: Path
    #: IANA zone the hub writes to device clocks (default: the system's local zone).
    timezone: str | None = None
    #: CA bundle that signs the broker's certificate (mqtts:// URLs).
    ca_file: str | None = None
    devices: list[AllowedDevice] = []
    #: Sessions one adapter runs at once (connection slots are few).
    max_concurrent_sessions: Annotated[int, Field(ge=1, le=8)] = 2
    status_interval_s: Annotated[float, Field(gt=0)] = 60.0
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 30
    connect_timeout_s: Annotated[float, Field(ge=10)] = 15.0

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Read a `.toml` or `.json` configuration file."""
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.model_validate(data)
