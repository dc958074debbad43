"""The campaign engine's decisions (pure: no database, no broker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

from ingest.campaign_engine import (
    Action,
    Campaign,
    CampaignState,
    Target,
    TargetState,
    assign_waves,
    decide,
    in_window,
    wave_sizes,
)

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
CAMPAIGN = Campaign(
    state=CampaignState.RUNNING,
    version="B",
    waves=(5, 50, 100),
    wave=0,
    max_parallel=3,
    confirm_timeout=timedelta(minutes=10),
    margin_failed_sessions=2,
    margin_error_readings=0,
)


def target(hub: str, wave: int, state: TargetState = TargetState.PENDING, **kw: object) -> Target:
    return Target(hub_id=hub, address="", wave=wave, state=state, from_version="A", **kw)  # type: ignore[arg-type]


def issued(hub: str, wave: int = 0, **kw: object) -> Target:
    return target(hub, wave, TargetState.ISSUED, issued_at=NOW - timedelta(minutes=1), **kw)


def test_waves_are_cumulative_with_a_canary_of_at_least_one() -> None:
    assert wave_sizes(20, (1, 10, 50, 100)) == [1, 2, 10, 20]
    assert wave_sizes(3, (1, 10, 50, 100)) == [1, 1, 2, 3]
    assert wave_sizes(1, (1, 100)) == [1, 1]
    waves = assign_waves([f"h{i}" for i in range(20)], (1, 10, 50, 100))
    assert [waves[f"h{i}"] for i in range(20)] == [0, 1] + [2] * 8 + [3] * 10


def test_windows_in_local_time_may_span_midnight() -> None:
    assert in_window(time(23, 30), time(22), time(5))
    assert in_window(time(4, 59), time(22), time(5))
    assert not in_window(time(5), time(22), time(5))
    assert not in_window(time(12), time(1), time(4))
    assert in_window(time(12), None, None)


def test_the_canary_is_asked_first_and_no_more_than_max_parallel() -> None:
    targets = [target("h0", 0), target("h1", 0)] + [target(f"h{i}", 1) for i in range(2, 9)]
    plan = decide(replace(CAMPAIGN, max_parallel=1), targets, NOW)
    assert plan.action == Action.WAIT and plan.issue == (("h0", ""),)
    plan = decide(CAMPAIGN, targets, NOW)
    assert plan.issue == (("h0", ""), ("h1", ""))  # later waves wait for the gate


def test_outside_the_window_nobody_is_asked() -> None:
    plan = decide(CAMPAIGN, [target("h0", 0, in_window=False)], NOW)
    assert plan.action == Action.WAIT and plan.issue == ()


def test_confirmed_online_at_the_new_version_passes_the_gate_and_advances() -> None:
    targets = [
        issued("h0", online=True, running="B", progress=("confirmed", None)),
        target("h1", 1),
    ]
    plan = decide(CAMPAIGN, targets, NOW)
    assert plan.confirm == (("h0", ""),)
    assert plan.action == Action.ADVANCE and plan.detail == {"wave": 1}


def test_running_but_not_yet_confirmed_or_offline_waits() -> None:
    for t in (
        issued("h0", online=True, running="B", progress=("confirming", None)),
        issued("h0", online=False, running="B", progress=("confirmed", None)),
        issued("h0", online=True, running="A", progress=("downloading", None)),
    ):
        plan = decide(CAMPAIGN, [t, target("h1", 1)], NOW)
        assert plan.action == Action.WAIT and plan.confirm == () and plan.issue == ()


def test_a_reverted_canary_pauses_with_the_reason_and_asks_nobody_else() -> None:
    targets = [
        issued("h0", online=True, running="A", progress=("reverted", "confirmation: no broker")),
        target("h1", 0),
        target("h2", 1),
    ]
    plan = decide(CAMPAIGN, targets, NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason == "hub h0: reverted: confirmation: no broker"
    assert plan.fail == ((("h0", ""), "reverted: confirmation: no broker"),)
    assert plan.issue == ()


def test_not_confirmed_in_time_is_a_failure() -> None:
    late = replace(issued("h0", online=True, running="A"), issued_at=NOW - timedelta(minutes=11))
    plan = decide(CAMPAIGN, [late], NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason is not None and "not confirmed within 600 s (runs A, online)" in plan.reason


def test_more_failed_sessions_or_error_readings_than_the_margin_pause() -> None:
    ok = target("h0", 0, TargetState.CONFIRMED, online=True, running="B", failed_sessions=2)
    assert decide(CAMPAIGN, [ok, target("h1", 1)], NOW).action == Action.ADVANCE
    sessions = replace(ok, failed_sessions=3)
    plan = decide(CAMPAIGN, [sessions, target("h1", 1)], NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason == "hub h0: 3 failed session(s) since the update (margin 2)"
    errors = replace(ok, error_readings=1, address="AA:BB:CC:DD:EE:01")
    plan = decide(CAMPAIGN, [errors], NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason == (
        "hub h0 device AA:BB:CC:DD:EE:01: 1 error reading(s) since the update (margin 0)"
    )


def test_the_last_wave_through_its_gate_completes() -> None:
    done = [
        target(f"h{i}", w, TargetState.CONFIRMED, online=True, running="B")
        for i, w in enumerate((0, 1, 2))
    ]
    assert decide(replace(CAMPAIGN, wave=2), done, NOW).action == Action.COMPLETE
    # A failed target HMC resumed past stays failed and does not hold the wave.
    failed = [*done[:2], target("h9", 2, TargetState.FAILED)]
    assert decide(replace(CAMPAIGN, wave=2), failed, NOW).action == Action.COMPLETE


def test_a_paused_or_cancelled_campaign_does_nothing() -> None:
    for state in (CampaignState.PAUSED, CampaignState.CANCELLED, CampaignState.DRAFT):
        plan = decide(replace(CAMPAIGN, state=state), [target("h0", 0)], NOW)
        assert plan.action == Action.WAIT and plan.issue == ()


def test_rolling_back_ends_when_every_target_runs_its_previous_version() -> None:
    c = replace(CAMPAIGN, state=CampaignState.ROLLING_BACK)
    back = target("h0", 0, TargetState.ROLLED_BACK, online=True, running="A")
    still = target("h1", 0, TargetState.ROLLED_BACK, online=True, running="B")
    plan = decide(c, [back, still], NOW)
    assert plan.action == Action.WAIT and plan.restore == (("h0", ""),)
    restored = replace(back, state=TargetState.RESTORED)
    plan = decide(c, [restored, replace(still, running="A")], NOW)
    assert plan.action == Action.ROLLED_BACK and plan.restore == (("h1", ""),)


SILENCE = replace(CAMPAIGN, silence_window=timedelta(hours=1))


def confirmed(hub: str, address: str = "", **kw: object) -> Target:
    return replace(
        target(hub, 0, TargetState.CONFIRMED, issued_at=NOW - timedelta(hours=3), **kw),
        address=address,
        online=True,
        running="B",
    )


def test_a_device_silent_longer_than_the_window_after_its_update_pauses_the_campaign() -> None:
    quiet = confirmed("h0", "C4:00:00:00:00:01", last_report_at=NOW - timedelta(minutes=61))
    plan = decide(SILENCE, [quiet, target("h1", 1)], NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason == (
        "hub h0 device C4:00:00:00:00:01: silent for 3660 s after the update (window 3600 s)"
    )
    assert plan.issue == ()


def test_a_hub_silent_longer_than_the_window_pauses_even_while_marked_online() -> None:
    # The broker has not yet published its last will: the stale status still says online.
    plan = decide(SILENCE, [confirmed("h0", last_report_at=NOW - timedelta(hours=2))], NOW)
    assert plan.action == Action.PAUSE
    assert plan.reason is not None and plan.reason.startswith("hub h0: silent for 7200 s")


def test_a_target_reporting_within_the_window_passes() -> None:
    recent = confirmed("h0", "C4:00:00:00:00:01", last_report_at=NOW - timedelta(minutes=59))
    plan = decide(SILENCE, [recent, target("h1", 1)], NOW)
    assert plan.action == Action.ADVANCE


def test_silence_counts_from_when_the_target_was_asked_at_the_earliest() -> None:
    # Last heard of long before it was asked; asked 30 minutes ago: not silent yet.
    asked = replace(
        confirmed("h0", last_report_at=NOW - timedelta(days=3)),
        issued_at=NOW - timedelta(minutes=30),
    )
    assert decide(SILENCE, [asked], NOW).action == Action.COMPLETE
    # Never reported since it was asked, 2 hours ago: silent.
    never = replace(asked, last_report_at=None, issued_at=NOW - timedelta(hours=2))
    plan = decide(SILENCE, [never], NOW)
    assert plan.action == Action.PAUSE and "silent for 7200 s" in (plan.reason or "")


def test_without_a_silence_window_silence_is_not_checked() -> None:
    quiet = confirmed("h0", last_report_at=NOW - timedelta(days=2))
    assert decide(CAMPAIGN, [quiet], NOW).action == Action.COMPLETE


def test_silence_of_a_target_of_a_later_wave_than_the_gate_is_not_judged_yet() -> None:
    later = replace(confirmed("h1", last_report_at=NOW - timedelta(days=2)), wave=1)
    plan = decide(SILENCE, [confirmed("h0", last_report_at=NOW), later], NOW)
    assert plan.action == Action.ADVANCE
