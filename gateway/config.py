"""The hub's configuration: its identity, its broker, and the devices it may talk to."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.credentials import BrokerCredentials
from hemhub.contract import AllowedDevice, HubId


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hub_id: HubId
    mqtt_url: str
    data_dir: Path
    #: IANA zone the hub writes to device clocks (default: the system's local zone).
    timezone: str | None = None
    #: Broker user name (by convention the hub id) and a file holding its password,
    #: readable by the service user only; or a client certificate and key.
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    #: CA bundle that signs the broker's certificate (mqtts:// URLs).
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Devices to use until the backend's configuration arrives (first boot, tests).
    devices: list[AllowedDevice] = []
    #: Sessions one adapter runs at once (connection slots are few).
    max_concurrent_sessions: Annotated[int, Field(ge=1, le=8)] = 2
    status_interval_s: Annotated[float, Field(gt=0)] = 60.0
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 30
    #: Reconnection attempts back off from 1 s up to this.
    reconnect_max_s: Annotated[int, Field(ge=1, le=3600)] = 60
    connect_timeout_s: Annotated[float, Field(ge=10)] = 15.0
    #: Disk the outbox may use. At 80 % the hub raises an alarm; when full it stops
    #: reading devices (they keep their records) rather than drop a reading.
    max_outbox_bytes: Annotated[int, Field(ge=1 << 20)] = 512 << 20
    #: Replay rate after an outage, so a week of backlog does not flood the broker.
    max_readings_per_s: Annotated[float, Field(gt=0)] = 500.0

    @model_validator(mode="after")
    def _username_is_hub_id(self) -> GatewayConfig:
        # The broker's ACL confines a user to hemhub/v1/hubs/<user name>/...: a hub
        # logged in under another name has every reading acknowledged and then dropped.
        if self.mqtt_username is not None and self.mqtt_username != self.hub_id:
            raise ValueError(
                f"mqtt_username {self.mqtt_username!r} must be the hub id {self.hub_id!r}"
            )
        return self

    def credentials(self) -> BrokerCredentials:
        return BrokerCredentials(
            username=self.mqtt_username,
            password_file=self.mqtt_password_file,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Read a `.toml` or `.json` configuration file."""
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.model_validate(data)
