"""The life of a device (ingest.device_life): every transition allowed or refused, and why."""

from __future__ import annotations

import itertools

import pytest

from ingest.device_life import (
    TRANSITIONS,
    RetiredAs,
    State,
    Transition,
    TransitionRefused,
    WipeStatus,
    check,
)

#: The life from issue 13, written out: anything not here is refused.
EXPECTED = {
    ("in_stock", "assigned"),
    ("in_stock", "repair"),
    ("in_stock", "retired"),
    ("assigned", "returned"),
    ("assigned", "retired"),
    ("returned", "quarantine"),
    ("returned", "retired"),
    ("quarantine", "in_stock"),
    ("quarantine", "repair"),
    ("quarantine", "retired"),
    ("repair", "in_stock"),
    ("repair", "retired"),
}


def _transition(a: State, b: State) -> Transition:
    """The transition with what its rules need to pass, where it may pass at all."""
    return Transition(
        a,
        b,
        retired_as=RetiredAs.LOST if b == State.RETIRED else None,
        wipe=WipeStatus.WIPED,
    )


@pytest.mark.parametrize(("a", "b"), list(itertools.product(State, State)))
def test_every_pair_of_states(a: State, b: State) -> None:
    if (a.value, b.value) in EXPECTED:
        check(_transition(a, b))
    else:
        with pytest.raises(TransitionRefused):
            check(_transition(a, b))


def test_the_table_is_the_issue() -> None:
    assert {(a.value, b.value) for a, bs in TRANSITIONS.items() for b in bs} == EXPECTED
    assert TRANSITIONS[State.RETIRED] == frozenset()


def test_a_refusal_says_what_is_possible() -> None:
    with pytest.raises(TransitionRefused, match=r"in_stock cannot become returned.*assigned"):
        check(Transition(State.IN_STOCK, State.RETURNED))
    with pytest.raises(TransitionRefused, match="already assigned"):
        check(Transition(State.ASSIGNED, State.ASSIGNED))
    with pytest.raises(TransitionRefused, match="can become: nothing"):
        check(Transition(State.RETIRED, State.IN_STOCK))


def test_retiring_says_why_and_only_lost_when_not_at_the_hmc() -> None:
    with pytest.raises(TransitionRefused, match="retired_as"):
        check(Transition(State.REPAIR, State.RETIRED))
    for where in (State.ASSIGNED, State.RETURNED):
        check(Transition(where, State.RETIRED, retired_as=RetiredAs.LOST))
        for why in (RetiredAs.BROKEN, RetiredAs.SCRAPPED):
            with pytest.raises(TransitionRefused, match="only be retired as lost"):
                check(Transition(where, State.RETIRED, retired_as=why))
    for why in RetiredAs:
        check(Transition(State.QUARANTINE, State.RETIRED, retired_as=why))
    with pytest.raises(TransitionRefused, match="only for a transition to retired"):
        check(Transition(State.QUARANTINE, State.REPAIR, retired_as=RetiredAs.BROKEN))


@pytest.mark.parametrize("wipe", [w for w in WipeStatus if w != WipeStatus.WIPED])
def test_back_to_stock_only_after_a_confirmed_wipe(wipe: WipeStatus) -> None:
    with pytest.raises(TransitionRefused, match=f"not confirmed \\(latest: {wipe.value}\\)"):
        check(Transition(State.QUARANTINE, State.IN_STOCK, wipe=wipe))
    check(Transition(State.QUARANTINE, State.IN_STOCK, wipe=WipeStatus.WIPED))


def test_or_a_persons_override_with_a_reason() -> None:
    check(Transition(State.QUARANTINE, State.IN_STOCK, override=True, reason="wiped by hand"))
    for reason in (None, "", "   "):
        with pytest.raises(TransitionRefused, match=r"override .* needs a reason"):
            check(Transition(State.QUARANTINE, State.IN_STOCK, override=True, reason=reason))
    with pytest.raises(TransitionRefused, match="only for quarantine -> in_stock"):
        check(Transition(State.REPAIR, State.IN_STOCK, override=True, reason="x"))


def test_repair_to_stock_needs_no_wipe() -> None:
    # Repair came from stock or quarantine: stock had no resident, quarantine was judged.
    check(Transition(State.REPAIR, State.IN_STOCK))
