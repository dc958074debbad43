"""The A/B slot state of the hub, sans I/O: a frozen value and pure transitions.

Two slots, "a" and "b", each a virtual environment. `active` is the slot the hub runs
(the `current` link points at it), `previous` the slot kept for a manual rollback.
After a switch the new slot is on trial (`trying`): each start of the service counts a
boot (`boot_count`); it must confirm itself before `confirm_by` (wall time, seconds)
and within `max_boots` starts, else the next boot check goes back to `previous`.
`gateway/update/slots.py` does the file work around these transitions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

SLOTS = ("a", "b")

#: Starts of a slot on trial without confirmation that count as a crash loop.
DEFAULT_MAX_BOOTS = 3
#: Seconds a new slot has to confirm itself.
DEFAULT_CONFIRM_TIMEOUT_S = 300.0

Progress = Literal["idle", "installing", "confirming", "confirmed", "failed", "reverted"]


class SlotError(Exception):
    """A transition refused in this state; `reason` is a short code, the text says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SlotState:
    active: str | None = None
    previous: str | None = None
    trying: bool = False
    boot_count: int = 0
    confirmed: bool = False
    confirm_by: float | None = None
    max_boots: int = DEFAULT_MAX_BOOTS
    #: Slot being written by an install (a crash leaves it set: the slot is not usable).
    installing: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    #: The last outcome for the hub status: (progress, reason).
    outcome: tuple[str, str | None] = ("idle", None)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["outcome"] = list(self.outcome)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlotState:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "outcome" in values:
            progress, reason = values["outcome"]
            values["outcome"] = (str(progress), reason)
        state = cls(**values)
        for slot in (state.active, state.previous, state.installing):
            if slot is not None and slot not in SLOTS:
                raise ValueError(f"unknown slot {slot!r} in the slot state")
        return state


@dataclass(frozen=True)
class Stay:
    """Boot the active slot."""


@dataclass(frozen=True)
class Revert:
    """The slot on trial failed (`reason`: not_confirmed or crash_loop): run `previous`."""

    reason: str


BootDecision = Stay | Revert


def spare(state: SlotState) -> str:
    """The slot an install writes: the one not active."""
    return "b" if state.active == "a" else "a"


def begin_install(state: SlotState) -> SlotState:
    if state.trying:
        raise SlotError("busy", f"slot {state.active} is on trial: confirm or revert it first")
    slot = spare(state)
    versions = {k: v for k, v in state.versions.items() if k != slot}
    if state.previous == slot:  # the rollback target is overwritten
        return dataclasses.replace(
            state, installing=slot, versions=versions, previous=None, outcome=("installing", None)
        )
    return dataclasses.replace(
        state, installing=slot, versions=versions, outcome=("installing", None)
    )


def installed(state: SlotState, version: str) -> SlotState:
    if state.installing is None:
        raise SlotError("not_installing", "no install in progress")
    versions = {**state.versions, state.installing: version}
    return dataclasses.replace(state, installing=None, versions=versions)


def install_failed(state: SlotState, reason: str) -> SlotState:
    """An install that stopped (error, or a crash found at the next boot check)."""
    return dataclasses.replace(state, installing=None, outcome=("failed", reason))


def switch(state: SlotState, now: float, confirm_timeout_s: float, max_boots: int) -> SlotState:
    """Make the installed spare slot active, on trial. The very first slot has nothing
    to go back to: it is active and confirmed at once."""
    target = spare(state)
    if state.trying:
        raise SlotError("busy", f"slot {state.active} is on trial: confirm or revert it first")
    if state.installing is not None or target not in state.versions:
        raise SlotError("not_installed", f"slot {target} holds no installed bundle")
    if state.active is None:
        return dataclasses.replace(
            state, active=target, confirmed=True, outcome=("confirmed", None)
        )
    return dataclasses.replace(
        state,
        active=target,
        previous=state.active,
        trying=True,
        boot_count=0,
        confirmed=False,
        confirm_by=now + confirm_timeout_s,
        max_boots=max_boots,
        outcome=("confirming", None),
    )


def confirm(state: SlotState) -> SlotState:
    if not state.trying:
        return state  # confirming a confirmed slot is a no-op (a repeated confirmation)
    return dataclasses.replace(
        state, trying=False, confirmed=True, confirm_by=None, outcome=("confirmed", None)
    )


def revert(state: SlotState, reason: str) -> SlotState:
    """Back to `previous` (confirmed before). The failed slot stays installed but is no
    rollback target."""
    if not state.trying or state.previous is None:
        raise SlotError("nothing_to_revert", "no slot on trial")
    return dataclasses.replace(
        state,
        active=state.previous,
        previous=None,
        trying=False,
        boot_count=0,
        confirmed=True,
        confirm_by=None,
        outcome=("reverted", reason),
    )


def deadline_passed(state: SlotState, now: float) -> bool:
    return state.trying and state.confirm_by is not None and now > state.confirm_by


def boot(state: SlotState, now: float) -> tuple[SlotState, BootDecision]:
    """One start of the service: a crash-interrupted install is dropped; a slot on trial
    that ran out of time or of boots is reverted, else its boot is counted."""
    if state.installing is not None:
        state = install_failed(state, "interrupted")
    if not state.trying:
        return state, Stay()
    if deadline_passed(state, now):
        return revert(state, "not_confirmed"), Revert("not_confirmed")
    if state.boot_count >= state.max_boots:
        return revert(state, "crash_loop"), Revert("crash_loop")
    return dataclasses.replace(state, boot_count=state.boot_count + 1), Stay()


def rollback(state: SlotState) -> SlotState:
    """HMC's manual rollback: back to the kept previous slot (which becomes the spare
    one's rollback target in turn)."""
    if state.trying:
        return revert(state, "rolled_back")
    if state.previous is None or state.previous not in state.versions:
        raise SlotError("no_previous", "no previous slot is kept to roll back to")
    return dataclasses.replace(
        state, active=state.previous, previous=state.active, outcome=("reverted", "rolled_back")
    )
