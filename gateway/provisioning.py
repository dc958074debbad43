"""The hub's allow-list, delivered by the backend on a retained per-hub topic and cached on
disk, so that a hub rebooted without network still knows which devices are its own."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import ValidationError

from hemhub.contract import AllowedDevice, HubConfig

log = logging.getLogger(__name__)


class ConfigRejected(ValueError):
    """A configuration message the hub will not apply (with the reason)."""


class ProvisioningStore:
    """The newest `HubConfig` this hub accepted, persisted atomically in `path`."""

    def __init__(self, path: Path, hub_id: str, bootstrap: list[AllowedDevice]) -> None:
        self.path = path
        self.hub_id = hub_id
        self._bootstrap = bootstrap
        self.current: HubConfig | None = self._load()

    def _load(self) -> HubConfig | None:
        try:
            config = HubConfig.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            # A damaged cache must not brick the hub: fall back to the bootstrap list and
            # wait for the retained configuration from the broker.
            log.error("ignoring damaged configuration cache %s: %s", self.path, exc)
            return None
        if config.hub_id != self.hub_id:
            log.error("configuration cache %s is for hub %s", self.path, config.hub_id)
            return None
        return config

    @property
    def devices(self) -> list[AllowedDevice]:
        return list(self.current.devices) if self.current else list(self._bootstrap)

    @property
    def version(self) -> int | None:
        return self.current.version if self.current else None

    def accept(self, payload: bytes) -> HubConfig:
        """Validate and persist a configuration message; raise ConfigRejected otherwise."""
        try:
            config = HubConfig.model_validate_json(payload)
        except ValidationError as exc:
            raise ConfigRejected(f"invalid configuration: {exc.error_count()} error(s)") from exc
        if config.hub_id != self.hub_id:
            raise ConfigRejected(f"configuration is for hub {config.hub_id!r}, not {self.hub_id!r}")
        if self.current is not None and config.version <= self.current.version:
            raise ConfigRejected(
                f"configuration version {config.version} is not newer than {self.current.version}"
            )
        self._write(payload)
        self.current = config
        return config

    def _write(self, payload: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)  # atomic: a power cut leaves the old or the new file
