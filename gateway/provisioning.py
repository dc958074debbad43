"""The hub's allow-list, delivered by the backend on a retained per-hub topic and cached on
disk, so that a hub rebooted without network still knows which devices are its own."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from pydantic import ValidationError

from hemhub.contract import AllowedDevice, HubConfig

log = logging.getLogger(__name__)


class ConfigRejected(ValueError):
    """A configuration message the hub will not apply (with the reason)."""


class ProvisioningStore:
    """The newest `HubConfig` this hub accepted, persisted atomically in `path`, and the
    devices taken off the list whose bond is still to be deleted (`pending_path`).

    A device removed from the list is recorded as a pending unbond, durably, before the
    new configuration is saved: a hub that dies (or whose unbond fails) between the two
    still knows what to unbond when it starts again. `unbonded()` clears one.
    """

    def __init__(
        self,
        path: Path,
        hub_id: str,
        bootstrap: list[AllowedDevice],
        pending_path: Path | None = None,
    ) -> None:
        self.path = path
        self.pending_path = pending_path or path.with_name("pending-unbonds.json")
        self.hub_id = hub_id
        self._bootstrap = bootstrap
        # accept() runs on the MQTT network thread, unbonded() on the event loop.
        self._lock = threading.Lock()
        self.current: HubConfig | None = self._load()
        allowed = {d.address for d in self.devices}
        self._pending: frozenset[str] = self._load_pending() - allowed

    def _load_pending(self) -> frozenset[str]:
        try:
            addresses = json.loads(self.pending_path.read_bytes())
        except FileNotFoundError:
            return frozenset()
        except ValueError as exc:
            log.error("ignoring damaged pending-unbond list %s: %s", self.pending_path, exc)
            return frozenset()
        if not isinstance(addresses, list):
            log.error("ignoring damaged pending-unbond list %s", self.pending_path)
            return frozenset()
        return frozenset(str(a).upper() for a in addresses)

    @property
    def pending_unbonds(self) -> list[str]:
        """Addresses of devices removed from the list whose bond is not deleted yet."""
        return sorted(self._pending)

    def unbonded(self, address: str) -> None:
        """The bond with `address` is gone: no longer pending."""
        with self._lock:
            if address in self._pending:
                self._save_pending(self._pending - {address})

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
            # Name the fields (strict: a wrong type is an error, never coerced); no input
            # values, which the log would repeat for any size.
            errors = exc.errors(include_url=False, include_input=False)
            shown = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]
            )
            raise ConfigRejected(
                f"invalid configuration: {len(errors)} error(s): {shown}"[:1024]
            ) from exc
        if config.hub_id != self.hub_id:
            raise ConfigRejected(f"configuration is for hub {config.hub_id!r}, not {self.hub_id!r}")
        if self.current is not None and config.version <= self.current.version:
            raise ConfigRejected(
                f"configuration version {config.version} is not newer than {self.current.version}"
            )
        with self._lock:
            wanted = {d.address for d in config.devices}
            removed = {d.address for d in self.devices} - wanted
            # Before the new list is saved: a device back on the list is no longer pending.
            pending = (self._pending | removed) - wanted
            if pending != self._pending:
                self._save_pending(pending)
            write_atomic(self.path, payload)
            self.current = config
        return config

    def erase(self) -> None:
        """Forget the cached configuration and the pending unbonds (a hub wipe): the hub
        falls back to its bootstrap list until the backend configures it again."""
        with self._lock:
            self.path.unlink(missing_ok=True)
            self.pending_path.unlink(missing_ok=True)
            self.current = None
            self._pending = frozenset()

    def _save_pending(self, pending: frozenset[str]) -> None:
        write_atomic(self.pending_path, json.dumps(sorted(pending)).encode())
        self._pending = pending


def write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # atomic: a power cut leaves the old or the new file
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
