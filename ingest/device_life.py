"""A device's life at the HMC as a state machine (sans-I/O: no database, no clock).

    in_stock ──assign──▶ assigned ──return──▶ returned ──▶ quarantine ──▶ in_stock
        │                   │                    │              │  ╲
        │                   └─▶ retired (lost)   └─▶ retired     │   ╲─▶ repair ──▶ in_stock
        └─▶ repair, retired                          (lost)      └─▶ retired        └─▶ retired

A device leaves quarantine for stock only after a confirmed data reset (wipe) or a
person's override with a reason: a device that may still hold a resident's records
never goes to the next one unnoticed. Retirement says why: lost, broken or scrapped.
Hubs live the same life (assigned: placed at a resident's home).

`check(...)` answers whether one transition may happen, and why not; the database side
(ingest/inventory.py) records every transition that did.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    IN_STOCK = "in_stock"
    ASSIGNED = "assigned"
    RETURNED = "returned"
    QUARANTINE = "quarantine"
    REPAIR = "repair"
    RETIRED = "retired"


class RetiredAs(enum.StrEnum):
    LOST = "lost"
    BROKEN = "broken"
    SCRAPPED = "scrapped"


class WipeStatus(enum.StrEnum):
    """The latest data reset of a device, as the hub reported it (ingest.commands)."""

    NONE = "none"  # never asked
    PENDING = "pending"
    WIPED = "wiped"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


#: Every transition a device may make; anything else is refused.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IN_STOCK: frozenset({State.ASSIGNED, State.REPAIR, State.RETIRED}),
    State.ASSIGNED: frozenset({State.RETURNED, State.RETIRED}),
    State.RETURNED: frozenset({State.QUARANTINE, State.RETIRED}),
    State.QUARANTINE: frozenset({State.IN_STOCK, State.REPAIR, State.RETIRED}),
    State.REPAIR: frozenset({State.IN_STOCK, State.RETIRED}),
    State.RETIRED: frozenset(),
}

#: From these states a device can only be retired as lost (it is not at the HMC).
ONLY_LOST_FROM = frozenset({State.ASSIGNED, State.RETURNED})


@dataclass(frozen=True)
class Transition:
    """One requested change of state, with what the rules need to judge it."""

    from_state: State
    to_state: State
    reason: str | None = None
    retired_as: RetiredAs | None = None
    #: quarantine -> in_stock without a confirmed wipe (a person takes responsibility).
    override: bool = False
    #: The device's latest data reset (only quarantine -> in_stock looks at it).
    wipe: WipeStatus = WipeStatus.NONE


class TransitionRefused(ValueError):
    """A transition the life of a device does not allow; the message says why."""


def allowed(from_state: State) -> frozenset[State]:
    """The states a device in `from_state` may go to."""
    return TRANSITIONS[from_state]


def check(t: Transition) -> None:
    """Raise TransitionRefused (with the reason) unless `t` may happen."""
    if t.from_state == t.to_state:
        raise TransitionRefused(f"the device is already {t.from_state.value}")
    if t.to_state not in TRANSITIONS[t.from_state]:
        can = ", ".join(sorted(s.value for s in TRANSITIONS[t.from_state])) or "nothing"
        raise TransitionRefused(
            f"a device {t.from_state.value} cannot become {t.to_state.value} (it can become: {can})"
        )
    if t.to_state == State.RETIRED:
        if t.retired_as is None:
            raise TransitionRefused("retiring needs retired_as: lost, broken or scrapped")
        if t.from_state in ONLY_LOST_FROM and t.retired_as != RetiredAs.LOST:
            raise TransitionRefused(
                f"a device {t.from_state.value} is not at the HMC: it can only be retired"
                " as lost (return it first to retire it as broken or scrapped)"
            )
    elif t.retired_as is not None:
        raise TransitionRefused("retired_as is only for a transition to retired")
    if t.override and not (t.from_state == State.QUARANTINE and t.to_state == State.IN_STOCK):
        raise TransitionRefused("an override is only for quarantine -> in_stock")
    if t.from_state == State.QUARANTINE and t.to_state == State.IN_STOCK:
        if t.override:
            if not (t.reason and t.reason.strip()):
                raise TransitionRefused("an override of the data reset needs a reason")
        elif t.wipe != WipeStatus.WIPED:
            raise TransitionRefused(
                f"the device's data reset is not confirmed (latest: {t.wipe.value}); wait for"
                " the hub's confirmation, or override with a reason"
            )
