"""The hub's configuration: its identity, its broker, and the devices it may talk to."""

from __future__ import annotations

import ipaddress
import json
import stat
import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.credentials import BrokerCredentials, InsecureCredentialsError
from hemhub.contract import AllowedDevice, HubId
from hemhub.settings import MqttTarget


def is_loopback(host: str) -> bool:
    """The host is this machine (a password sent to it never crosses a network)."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _repository_url(value: str) -> str:
    """An http(s) base URL. Plain http is allowed: TUF's signatures, not the transport,
    protect the metadata and files (a mirror on a LAN need not have TLS)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a repository URL has no query or fragment")
    return value if value.endswith("/") else value + "/"


class UpdateSettings(BaseModel):
    """Where the hub's update agent (gateway/update/agent.py) gets its software: the TUF
    repository (docs/firmware.md, "On the hub")."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: The repository's base URL: its metadata under `metadata/`, its files under
    #: `targets/` (unless `targets_url` says otherwise).
    repository_url: str
    #: Another base for the (large) target files, e.g. a CDN; TUF checks them all the same.
    targets_url: str | None = None
    #: The repository's root.json the image ships: the trust anchor, copied into
    #: `metadata_dir` the first time (afterwards the hub follows the root chain).
    trusted_root: Path
    #: Where TUF's client keeps the metadata it trusts (writable; default
    #: <data_dir>/update/metadata). Keeping it is what keeps the rollback protection.
    metadata_dir: Path | None = None
    #: How long a new slot has to confirm itself, and how many starts it gets.
    confirm_timeout_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    max_boots: Annotated[int, Field(ge=1, le=20)] = 3

    @field_validator("repository_url", "targets_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _repository_url(value)


class GatewayConfig(BaseModel):
    """The hub's own configuration file. Strict, like the wire contract: a value of the
    wrong type (a string, a boolean or a float for an integer; a string for a number or a
    boolean) is an error naming the field, never coerced. Validated from JSON (`load`),
    where a path is a string."""

    model_config = ConfigDict(extra="forbid", strict=True)

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
    #: The A/B slots root (docs/firmware.md): a slot on trial confirms itself
    #: once healthy, or goes back to the previous slot. None: not run from slots.
    slots_root: Path | None = None
    #: The hub's software updates (needs slots_root), and where its devices' firmware
    #: images come from (the same repository). None: the hub updates neither its own
    #: software nor its devices, and ignores the `software` and `firmware` a
    #: configuration asks for.
    update: UpdateSettings | None = None
    #: Replay rate after an outage, so a week of backlog does not flood the broker.
    max_readings_per_s: Annotated[float, Field(gt=0)] = 500.0
    #: A reading the broker acknowledged is published again when ingest's receipt has
    #: not come after this long, doubling per attempt up to the max (docs/gateway.md).
    receipt_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    receipt_timeout_max_s: Annotated[float, Field(gt=0)] = 600.0
    #: The status raises `disk_low` while the data directory's filesystem has less free
    #: space than either threshold (bytes, or percent of its size); it clears once both
    #: are met again.
    min_disk_free_bytes: Annotated[int, Field(ge=0)] = 200 << 20
    min_disk_free_percent: Annotated[float, Field(ge=0, le=100)] = 5.0
    #: A device wipe waits this long for the device to advertise (bring it near the hub).
    device_wipe_wait_s: Annotated[float, Field(gt=0)] = 900.0
    #: A hub wipe first gives the outbox this long to deliver what it holds, and its
    #: own report this long to reach the broker, before erasing.
    hub_wipe_drain_s: Annotated[float, Field(ge=0)] = 60.0
    #: Send a password over plain mqtt:// to a host other than this machine. Never in
    #: production: anyone on the path reads it. Without it the gateway refuses to start.
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _username_is_hub_id(self) -> GatewayConfig:
        # The broker's ACL confines a user to hemhub/v1/hubs/<user name>/...: a hub
        # logged in under another name has every reading acknowledged and then dropped.
        if self.mqtt_username is not None and self.mqtt_username != self.hub_id:
            raise ValueError(
                f"mqtt_username {self.mqtt_username!r} must be the hub id {self.hub_id!r}"
            )
        target = MqttTarget(self.mqtt_url)
        if target.password is not None and self.mqtt_password_file is not None:
            raise ValueError("a password in mqtt_url and mqtt_password_file: give one of them")
        sends_password = target.password is not None or self.mqtt_password_file is not None
        if sends_password and not target.tls and not is_loopback(target.host):
            if not self.allow_insecure:
                raise ValueError(
                    f"refusing to send the broker password in clear text over mqtt:// to"
                    f" {target.host!r}: use mqtts:// (TLS), or set allow_insecure = true"
                    " (never in production)"
                )
        return self

    @model_validator(mode="after")
    def _update_needs_slots(self) -> GatewayConfig:
        if self.update is not None and self.slots_root is None:
            raise ValueError("update needs slots_root: the agent installs into the A/B slots")
        return self

    @property
    def url_has_password(self) -> bool:
        return MqttTarget(self.mqtt_url).password is not None

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
        """Read a `.toml` or `.json` configuration file.

        A configuration whose `mqtt_url` carries a password is itself a secret file: it
        is refused (`InsecureCredentialsError`) when the group or others can read it, as
        a password file is (`mqtt_password_file` is the better place).
        """
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        config = cls.model_validate_json(json.dumps(data))
        mode = path.stat().st_mode
        if config.url_has_password and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureCredentialsError(
                f"{path} holds a password in mqtt_url and is accessible to group or others"
                f" (mode {stat.S_IMODE(mode):o}): run chmod 600 {path}, or move the password"
                " to mqtt_password_file"
            )
        return config
