"""The hub's update agent: what the reconciler (gateway/update/reconcile.py) drives,
over the TUF-verified fetch (gateway/update/fetch.py) and the A/B slots
(gateway/update/slots.py).

- running version: the version of the slot this process started in (read once, at
  start: the boot check pointed `current` at it). After a switch the slot state names
  the new slot, but this process still runs the old code until it restarts, so it must
  not confirm the new slot itself.
- fetch: TUF's client verifies the repository's metadata and the bundle into
  `<data_dir>/update/downloads`; a signed release older than the running one is refused
  (`rollback`). A refusal is `UpdateFailed("refused", "<code>: ...")`; an unreachable
  repository defers (tried again at the next pass).
- install: the bundle checked (its members against its manifest, its version against
  its name), into the spare slot, then the switch to it on trial (the
  settings' confirmation time and boot count); the download is then deleted.
- restart: the gateway stops and the process exits with EXIT_RESTART; systemd
  (edge_image/systemd/hemhub-gateway.service: Restart=always, RestartForceExitStatus=75)
  starts it again, the boot check first, so the new `current` slot runs.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from edge_image.bundle import BundleError, bundle_name, read_manifest
from gateway.config import UpdateSettings
from gateway.provisioning import write_atomic
from gateway.update import slots
from gateway.update.fetch import UpdateRefused, fetch_verified
from gateway.update.reconcile import UpdateDeferred, UpdateFailed
from gateway.update.slot_state import SlotError, SlotState, spare
from hemhub import __version__

log = logging.getLogger(__name__)

#: The exit status asking systemd for a restart into the slot to boot (EX_TEMPFAIL);
#: the unit lists it in RestartForceExitStatus= and SuccessExitStatus=.
EXIT_RESTART = 75

#: Slot errors that pass: the slot on trial settles (confirms or reverts) by itself.
_TRANSIENT = {"busy"}

_REVERT_TEXT = {
    "not_confirmed": "did not confirm itself in time",
    "crash_loop": "was started {max_boots} times without confirming (a crash loop)",
    "rolled_back": "was rolled back",
}


class UpdateConfigError(ValueError):
    """Update settings the agent cannot work with (the gateway refuses to start)."""


class SlotUpdateAgent:
    """The real `UpdateAgent`. Its methods block (files, network, pip): the reconciler
    runs them in a thread."""

    def __init__(
        self,
        settings: UpdateSettings,
        slots_root: Path,
        data_dir: Path,
    ) -> None:
        self.settings = settings
        self.slots_root = slots_root
        self.metadata_dir = settings.metadata_dir or data_dir / "update" / "metadata"
        self.downloads = data_dir / "update" / "downloads"
        #: Set by `restart`; the service then exits with EXIT_RESTART.
        self.restart_requested = threading.Event()
        #: Called by `restart` (the service: stop the gateway).
        self.on_restart: Callable[[], None] | None = None
        if not (self.metadata_dir / "root.json").is_file():
            if not settings.trusted_root.is_file():
                raise UpdateConfigError(
                    f"update.trusted_root {settings.trusted_root} is not a file, and"
                    f" {self.metadata_dir} holds no trusted root.json: the hub would trust"
                    " no update repository"
                )
            # The trust anchor the image ships; afterwards TUF's client moves it forward.
            write_atomic(self.metadata_dir / "root.json", settings.trusted_root.read_bytes())
        self._booted = self._active_version(slots.load_state(slots_root))

    @staticmethod
    def _active_version(state: SlotState) -> str:
        if state.active is not None and state.active in state.versions:
            return state.versions[state.active]
        return __version__  # not run from a slot yet (a development install)

    def running_version(self) -> str:
        return self._booted

    def previous_version(self) -> str | None:
        state = slots.load_state(self.slots_root)
        if state.previous is None:
            return None
        return state.versions.get(state.previous)

    def fetch(self, target: str, progress: Callable[[int], None]) -> Path:
        def percent(received: int, total: int) -> None:
            progress(100 if total <= 0 else min(100, received * 100 // total))

        self._drop_downloads(keep=target)
        try:
            return fetch_verified(
                self.settings.repository_url,
                self.metadata_dir,
                target,
                self.downloads,
                progress=percent,
                installed_version=self._booted,
                targets_url=self.settings.targets_url,
            )
        except UpdateRefused as exc:
            if exc.reason == "unreachable":
                raise UpdateDeferred(exc.reason, exc.message) from exc
            raise UpdateFailed("refused", f"{exc.reason}: {exc.message}") from exc

    def _drop_downloads(self, keep: str) -> None:
        """Bundles of other targets (an update given up) would only fill the disk."""
        if not self.downloads.is_dir():
            return
        for path in self.downloads.iterdir():
            if path.name != keep:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def install(self, bundle: Path) -> None:
        try:
            # The whole archive against its manifest, and the version its name promises
            # (a campaign's target is `hemhub-hub-<version>.tar` of the version it asks).
            manifest = read_manifest(bundle)
        except BundleError as exc:
            raise UpdateFailed("bad_bundle", str(exc)) from exc
        if bundle.name != bundle_name(manifest.version):
            raise UpdateFailed(
                "bad_bundle", f"{bundle.name} holds version {manifest.version}, not its name's"
            )
        try:
            slots.install_bundle(bundle, self.slots_root)
            state = slots.switch(
                self.slots_root,
                confirm_timeout_s=self.settings.confirm_timeout_s,
                max_boots=self.settings.max_boots,
            )
        except SlotError as exc:
            if exc.reason in _TRANSIENT:
                raise UpdateDeferred(exc.reason, str(exc)) from exc
            raise UpdateFailed(exc.reason, str(exc)) from exc
        except OSError as exc:  # the slots partition full or read-only
            raise UpdateFailed("install_failed", str(exc)) from exc
        log.info("installed %s into slot %s, on trial", bundle.name, state.active)
        bundle.unlink(missing_ok=True)  # unpacked in the slot; the download is done with

    def switch_to_previous(self) -> None:
        try:
            state = slots.rollback(self.slots_root)
        except SlotError as exc:
            raise UpdateFailed(exc.reason, str(exc)) from exc
        log.info("back to slot %s (%s)", state.active, state.versions.get(state.active or ""))

    def confirm(self) -> None:
        slots.confirm(self.slots_root)

    def revert_reason(self) -> str | None:
        """Why the last slot on trial was left: the boot check's or the confirmation's
        reason, with the version given up. None unless the last outcome is a revert of
        a trial (a revert keeps no previous slot; a manual rollback does)."""
        state = slots.load_state(self.slots_root)
        progress, code = state.outcome
        if progress != "reverted" or state.previous is not None or not code:
            return None
        left = state.versions.get(spare(state), "the new version")
        text = _REVERT_TEXT.get(code, "was left").format(max_boots=state.max_boots)
        return f"{code}: {left} {text}; back to {self._active_version(state)}"

    def restart(self) -> None:
        self.restart_requested.set()
        if self.on_restart is not None:
            self.on_restart()
