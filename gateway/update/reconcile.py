"""The hub's update reconciler: the desired software (the retained configuration's
`software`, a rollout campaign's) against what runs, one step at a time.

It drives an `UpdateAgent` (the verified fetch of gateway/update/fetch.py and the A/B
slots of gateway/update/slots.py) and records where it stands as an `UpdateProgress`
in a file of its own, written atomically before each step, so that the status reports
it and a hub restarted (by the update itself, a crash or a power cut) picks up where it
was:

- downloading (percent) -> installing -> confirming: the bundle is fetched (TUF-verified)
  and installed into the other slot, which the agent switches to on trial, and the
  hub restarts;
- confirming (or installing: a restart came between the switch and its record), and
  the new version runs: once the hub is ready (broker connected, status
  published: the caller says), the agent confirms the slot -> confirmed;
- confirming, and the old version runs: the slot did not confirm and the hub went back
  (the boot counter, a crash loop) -> reverted, with the agent's reason;
- a desired version that is the previous slot's (a rollback): switch back, restart;
- a fetch refused (unsigned, altered, expired, rollback, freeze, ...) or an install that
  failed -> failed with the reason; the running version is untouched;
- a step deferred (the repository unreachable, a slot still on trial) -> downloading
  with the reason, tried again at the next pass.

A campaign's version that failed or reverted is not tried again (HMC decides: roll
back, or a new campaign); a download or install interrupted by a restart is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from gateway.provisioning import write_atomic
from hemhub.contract import DesiredFirmware, DesiredSoftware, UpdateProgress, UpdateState

log = logging.getLogger(__name__)


class UpdateFailed(Exception):
    """A step of the update failed; `reason` is a short code (refused, install, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class UpdateDeferred(Exception):
    """A step that cannot be done now but may be later (the repository unreachable, a
    slot still on trial): the progress says why and the next pass tries again."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class UpdateAgent(Protocol):
    """What the reconciler drives (blocking calls: run in a thread)."""

    def running_version(self) -> str:
        """The version of the slot running now."""

    def previous_version(self) -> str | None:
        """The version kept in the other slot, if any (a manual or campaign rollback)."""

    def fetch(self, target: str, progress: Callable[[int], None]) -> Path:
        """The verified bundle (TUF); raise UpdateFailed (reason: refused) otherwise, or
        UpdateDeferred when the repository cannot be reached now."""

    def install(self, bundle: Path) -> None:
        """Install into the other slot and switch to it on trial; UpdateFailed otherwise."""

    def switch_to_previous(self) -> None:
        """Make the other slot the one to boot (confirmed: it ran before)."""

    def confirm(self) -> None:
        """The running slot proved itself: keep it."""

    def revert_reason(self) -> str | None:
        """Why the last trial slot was left (no confirmation in time, a crash loop)."""

    def restart(self) -> None:
        """Restart the hub software (systemd) into the slot to boot."""


def _now() -> datetime:
    return datetime.now(UTC)


def progress_towards(
    desired: DesiredSoftware | DesiredFirmware,
    state: UpdateState,
    *,
    percent: int | None = None,
    reason: str | None = None,
) -> UpdateProgress:
    """The progress report of an update towards `desired`, as of now (the hub software's
    and each device firmware's alike)."""
    return UpdateProgress(
        campaign_id=desired.campaign_id,
        version=desired.version,
        state=state,
        percent=percent,
        reason=reason[:512] if reason else None,
        at=_now(),
    )


class Reconciler:
    """One hub's software reconciler; `progress` is what its status reports."""

    def __init__(
        self,
        agent: UpdateAgent,
        state_path: Path,
        *,
        on_progress: Callable[[UpdateProgress], None] | None = None,
    ) -> None:
        self.agent = agent
        self.state_path = state_path
        self.on_progress = on_progress
        self.progress: UpdateProgress | None = self._load()
        self._lock = asyncio.Lock()

    @property
    def awaiting_confirmation(self) -> bool:
        """Switched (or switching) to the new version: a pass with the hub ready confirms it."""
        p = self.progress
        return p is not None and p.state in (UpdateState.INSTALLING, UpdateState.CONFIRMING)

    def _load(self) -> UpdateProgress | None:
        try:
            return UpdateProgress.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValidationError, ValueError) as exc:
            log.error("ignoring damaged update state %s: %s", self.state_path, exc)
            return None

    def _set(
        self,
        desired: DesiredSoftware,
        state: UpdateState,
        *,
        percent: int | None = None,
        reason: str | None = None,
    ) -> None:
        progress = progress_towards(desired, state, percent=percent, reason=reason)
        write_atomic(self.state_path, progress.model_dump_json(exclude_none=True).encode())
        self.progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)

    def _same(self, desired: DesiredSoftware) -> bool:
        p = self.progress
        return (
            p is not None and p.campaign_id == desired.campaign_id and p.version == desired.version
        )

    async def reconcile(self, desired: DesiredSoftware | None, *, ready: bool) -> None:
        """One pass towards `desired`; `ready`: the hub is connected and reported its
        status (a trial slot may confirm). Passes run one at a time."""
        if desired is None:
            return
        async with self._lock:
            await self._pass(desired, ready)

    async def _pass(self, desired: DesiredSoftware, ready: bool) -> None:
        agent = self.agent
        running = await asyncio.to_thread(agent.running_version)
        state = self.progress.state if self._same(desired) and self.progress else None
        if state in (UpdateState.FAILED, UpdateState.REVERTED, UpdateState.CONFIRMED):
            if state != UpdateState.CONFIRMED or running == desired.version:
                return
        if running == desired.version:
            # Also after a restart between the switch and the record of it (installing).
            if not ready:
                return  # confirmed once the hub is connected and reported
            await asyncio.to_thread(agent.confirm)
            self._set(desired, UpdateState.CONFIRMED)
            log.info("hub software %s confirmed", desired.version)
            return
        trial_left = state == UpdateState.INSTALLING and bool(
            await asyncio.to_thread(agent.revert_reason)
        )
        if state == UpdateState.CONFIRMING or trial_left:
            reason = await asyncio.to_thread(agent.revert_reason)
            self._set(
                desired, UpdateState.REVERTED, reason=reason or "the new slot did not confirm"
            )
            log.warning("hub software %s reverted: %s", desired.version, reason)
            return
        if await asyncio.to_thread(agent.previous_version) == desired.version:
            self._set(desired, UpdateState.CONFIRMING)
            try:
                await asyncio.to_thread(agent.switch_to_previous)
            except UpdateFailed as exc:
                self._set(desired, UpdateState.FAILED, reason=f"{exc.reason}: {exc.message}")
                log.warning("hub software %s: no way back: %s", desired.version, exc)
                return
            await asyncio.to_thread(agent.restart)
            return
        try:
            self._set(desired, UpdateState.DOWNLOADING, percent=0)
            loop = asyncio.get_running_loop()
            last = [0]

            def progress(percent: int) -> None:
                if percent >= last[0] + 10 or percent == 100:  # every 10 % at most
                    last[0] = percent
                    loop.call_soon_threadsafe(
                        lambda: self._set(desired, UpdateState.DOWNLOADING, percent=percent)
                    )

            bundle = await asyncio.to_thread(agent.fetch, desired.target, progress)
            self._set(desired, UpdateState.INSTALLING)
            await asyncio.to_thread(agent.install, bundle)
        except UpdateDeferred as exc:
            # Downloading still (the next pass starts the step again), saying why it waits.
            self._set(desired, UpdateState.DOWNLOADING, percent=0, reason=str(exc))
            log.warning("hub software %s deferred: %s", desired.version, exc)
            return
        except UpdateFailed as exc:
            self._set(desired, UpdateState.FAILED, reason=f"{exc.reason}: {exc.message}")
            log.warning("hub software %s failed: %s", desired.version, exc)
            return
        self._set(desired, UpdateState.CONFIRMING)
        await asyncio.to_thread(agent.restart)
