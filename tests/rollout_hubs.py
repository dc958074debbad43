"""Lightweight simulated hubs for the rollout tests: the real MQTT side of a hub (the
gateway's `OutboxPublisher`: retained status, last will, the retained configuration
cached by the real `ProvisioningStore`) driven by the real update reconciler
(`gateway.update.reconcile`), over the real broker.

What installs is either the hub's real update agent (`RealSlots`: gateway/update/agent.py
over a TUF repository on a local HTTP server and real A/B slots with their virtual
environments), or `DirectorySlots`, a minimal A/B installer on a temporary directory
(two slots, the one to boot, a trial flag, a revert on a failed confirmation) for the
20-hub campaign, where 40 virtual environments would take minutes. It copies bundles
from a directory and reads their manifest; it fakes no result: a version that cannot
confirm (`broken`: say, it cannot reach the broker) really stays unconfirmed, and the
hub goes back to the previous slot on its own.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import UpdateSettings
from gateway.outbox import Outbox
from gateway.provisioning import ConfigRejected, ProvisioningStore, write_atomic
from gateway.publisher import OutboxPublisher
from gateway.update import slots
from gateway.update.agent import SlotUpdateAgent
from gateway.update.reconcile import Reconciler, UpdateAgent, UpdateFailed
from hemhub.contract import UpdateProgress


def build_bundle(repo: Path, version: str) -> str:
    """A bundle as shared14 item 1 describes it (manifest only; no wheels needed here)."""
    name = f"hemhub-hub-{version}.tar"
    staging = repo / f".{version}"
    staging.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1,
        "version": version,
        "python": "3.11",
        "created_at": datetime.now(UTC).isoformat(),
        "wheels": [],
        "units": [],
        "config_migrations": [],
    }
    (staging / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(repo / name, "w") as tar:
        tar.add(staging / "manifest.json", arcname="manifest.json")
    return name


class DirectorySlots:
    """Two slots in `root/slots.json`: which version each holds, which one boots, whether
    it is on trial, and why the last trial was left."""

    def __init__(self, root: Path, repo: Path, first_version: str, broken: set[str]) -> None:
        self.root = root
        self.repo = repo
        self.broken = broken
        self.path = root / "slots.json"
        self.restart_wanted = threading.Event()
        if not self.path.exists():
            self._save({"active": "a", "slots": {"a": first_version, "b": None}, "trying": False})

    def _load(self) -> dict[str, object]:
        return dict(json.loads(self.path.read_text()))

    def _save(self, state: dict[str, object]) -> None:
        write_atomic(self.path, json.dumps(state).encode())

    @staticmethod
    def _other(active: object) -> str:
        return "b" if active == "a" else "a"

    def running_version(self) -> str:
        s = self._load()
        return str(s["slots"][s["active"]])  # type: ignore[index]

    def previous_version(self) -> str | None:
        s = self._load()
        value = s["slots"][self._other(s["active"])]  # type: ignore[index]
        return None if value is None else str(value)

    def fetch(self, target: str, progress: Callable[[int], None]) -> Path:
        source = self.repo / target
        if not source.is_file():
            raise UpdateFailed("not_found", f"no target {target} in the repository")
        dest = self.root / "download" / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        with source.open("rb") as src, dest.open("wb") as out:
            done = 0
            while chunk := src.read(max(size // 4, 1)):
                out.write(chunk)
                done += len(chunk)
                progress(min(100, done * 100 // size))
        return dest

    def install(self, bundle: Path) -> None:
        try:
            with tarfile.open(bundle) as tar:
                member = tar.extractfile("manifest.json")
                assert member is not None
                version = str(json.loads(member.read())["version"])
        except (tarfile.TarError, KeyError, ValueError) as exc:
            raise UpdateFailed("install", f"not a bundle: {exc}") from exc
        s = self._load()
        other = self._other(s["active"])
        s["slots"][other] = version  # type: ignore[index]
        s.update(active=other, trying=True, reason=None)
        self._save(s)

    def switch_to_previous(self) -> None:
        s = self._load()
        s.update(active=self._other(s["active"]), trying=False)
        self._save(s)

    def confirm(self) -> None:
        s = self._load()
        s["trying"] = False
        self._save(s)

    def revert_reason(self) -> str | None:
        reason = self._load().get("reason")
        return None if reason is None else str(reason)

    def restart(self) -> None:
        self.restart_wanted.set()

    def boot(self) -> bool:
        """At start: False when the slot on trial cannot confirm (it goes back, and the
        hub must restart into the previous slot)."""
        s = self._load()
        version = s["slots"][s["active"]]  # type: ignore[index]
        if s["trying"] and version in self.broken:
            s.update(
                active=self._other(s["active"]),
                trying=False,
                reason=f"confirmation failed: {version} did not connect to the broker",
            )
            self._save(s)
            return False
        return True


class RealSlots:
    """The hub's real update agent over real slots under `root`. Each boot runs the boot
    check first (the unit's ExecStartPre) and then starts a new agent (a new process).
    A version in `broken` dies at each start before it could confirm: the boot check
    counts those starts and, after max_boots, goes back to the previous slot."""

    def __init__(
        self, root: Path, data_dir: Path, settings: UpdateSettings, broken: set[str]
    ) -> None:
        self.root = root
        self.data_dir = data_dir
        self.settings = settings
        self.broken = broken
        self.agent = SlotUpdateAgent(settings, root, data_dir)

    def boot(self) -> bool:
        state, _ = slots.check_boot(self.root)
        if state.trying and state.versions.get(state.active or "") in self.broken:
            return False
        self.agent = SlotUpdateAgent(self.settings, self.root, self.data_dir)
        return True

    @property
    def restart_wanted(self) -> threading.Event:
        return self.agent.restart_requested

    def running_version(self) -> str:
        return self.agent.running_version()

    def previous_version(self) -> str | None:
        return self.agent.previous_version()


class SimulatedHub:
    """One hub: publisher + provisioning store + reconciler; restarts when the update
    asks (a new publisher: a new MQTT session, offline then online)."""

    def __init__(
        self,
        hub_id: str,
        mqtt_url: str,
        data_dir: Path,
        repo: Path,
        *,
        broken: set[str],
        real_slots: RealSlots | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.mqtt_url = mqtt_url
        self.data_dir = data_dir
        self.slots: DirectorySlots | RealSlots = real_slots or DirectorySlots(
            data_dir, repo, "A", broken
        )
        self.store = ProvisioningStore(data_dir / "hub-config.json", hub_id, [])
        self.publisher: OutboxPublisher | None = None
        self.restarts = 0

    def _status_extra(self) -> dict[str, object]:
        progress: UpdateProgress | None = self.reconciler.progress
        return {"config_version": self.store.version, "software_update": progress}

    def _on_message(self, kind: str, payload: bytes) -> None:
        if kind == "config" and payload:
            try:
                self.store.accept(payload)
            except ConfigRejected:
                pass

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self.slots.boot():
                self.restarts += 1
                continue  # the broken slot never came up; back into the previous one
            agent: UpdateAgent = (
                self.slots.agent if isinstance(self.slots, RealSlots) else self.slots
            )
            self.reconciler = Reconciler(
                agent,
                self.data_dir / "update-state.json",
                on_progress=lambda _: self.publisher.publish_status() if self.publisher else None,
            )
            outbox = Outbox(self.data_dir / "outbox.sqlite3")
            self.publisher = OutboxPublisher(
                outbox,
                hub_id=self.hub_id,
                mqtt_url=self.mqtt_url,
                status_interval_s=2.0,
                software_version=self.slots.running_version(),
                status_extra=self._status_extra,
                on_backend_message=self._on_message,
            )
            self.publisher.start()
            try:
                while not stop.is_set() and not self.slots.restart_wanted.is_set():
                    desired = self.store.current.software if self.store.current else None
                    await self.reconciler.reconcile(desired, ready=self.publisher.connected)
                    await asyncio.sleep(0.2)
            finally:
                await asyncio.to_thread(self.publisher.stop, 1.0)
                outbox.close()
            if self.slots.restart_wanted.is_set():
                self.slots.restart_wanted.clear()
                self.restarts += 1
