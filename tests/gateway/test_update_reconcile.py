"""The hub's update reconciler (gateway/update/reconcile.py) against a minimal A/B
installer in a temporary directory (tests/rollout_hubs.py): each step, a restart at
each step, a refusal, a revert, a rollback to the previous slot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.update.reconcile import Reconciler, UpdateFailed
from hemhub.contract import DesiredSoftware, UpdateProgress, UpdateState
from tests.rollout_hubs import DirectorySlots, build_bundle

CAMPAIGN = "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40"


def want(version: str) -> DesiredSoftware:
    return DesiredSoftware(
        version=version, target=f"hemhub-hub-{version}.tar", campaign_id=CAMPAIGN
    )


def setup(tmp_path: Path, broken: set[str] | None = None) -> tuple[DirectorySlots, Path]:
    repo = tmp_path / "repo"
    build_bundle(repo, "B")
    return DirectorySlots(tmp_path / "hub", repo, "A", broken or set()), tmp_path / "state.json"


def boot(slots: DirectorySlots, state: Path, seen: list[UpdateProgress]) -> Reconciler:
    """The hub (re)starting: a new reconciler from what is on disk."""
    slots.restart_wanted.clear()
    slots.boot()
    return Reconciler(slots, state, on_progress=seen.append)


async def test_download_install_restart_confirm(tmp_path: Path) -> None:
    slots, state = setup(tmp_path)
    seen: list[UpdateProgress] = []
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    assert [p.state for p in seen] == [
        UpdateState.DOWNLOADING,
        *([UpdateState.DOWNLOADING] * (len(seen) - 3)),
        UpdateState.INSTALLING,
        UpdateState.CONFIRMING,
    ]
    assert [p.percent for p in seen if p.state == UpdateState.DOWNLOADING][-1] == 100
    assert slots.restart_wanted.is_set() and slots.running_version() == "B"
    r = boot(slots, state, seen)
    assert r.progress is not None and r.progress.state == UpdateState.CONFIRMING
    await r.reconcile(want("B"), ready=False)  # not connected yet: no confirmation
    assert r.progress.state == UpdateState.CONFIRMING
    await r.reconcile(want("B"), ready=True)
    assert r.progress.state == UpdateState.CONFIRMED and r.progress.campaign_id == CAMPAIGN
    assert slots.previous_version() == "A"
    # Nothing more to do; the same desired state again changes nothing.
    before = len(seen)
    await r.reconcile(want("B"), ready=True)
    assert len(seen) == before


async def test_a_restart_during_download_or_install_starts_that_step_again(
    tmp_path: Path,
) -> None:
    slots, state = setup(tmp_path)
    seen: list[UpdateProgress] = []

    class Crash(Exception):
        pass

    def crash_in(step: str) -> Callable[..., None]:
        def fail(*args: object) -> None:
            raise Crash(step)

        return fail

    for step in ("fetch", "install"):
        r = boot(slots, state, seen)
        original = getattr(slots, step)
        setattr(slots, step, crash_in(step))
        try:
            await r.reconcile(want("B"), ready=True)
        except Crash:
            pass  # the process died here
        finally:
            setattr(slots, step, original)
        assert Reconciler(slots, state).progress is not None
        assert slots.running_version() == "A"
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    assert r.progress is not None and r.progress.state == UpdateState.CONFIRMED
    assert slots.running_version() == "B"


async def test_a_refused_fetch_fails_with_the_reason_and_is_not_retried(tmp_path: Path) -> None:
    slots, state = setup(tmp_path)
    seen: list[UpdateProgress] = []
    r = boot(slots, state, seen)

    def refuse(target: str, progress: Callable[[int], None]) -> Path:
        raise UpdateFailed("expired", "timestamp metadata expired")

    slots.fetch = refuse  # type: ignore[method-assign]
    await r.reconcile(want("B"), ready=True)
    assert r.progress is not None and r.progress.state == UpdateState.FAILED
    assert r.progress.reason == "expired: timestamp metadata expired"
    await r.reconcile(want("B"), ready=True)
    assert [p.state for p in seen].count(UpdateState.DOWNLOADING) == 1
    assert slots.running_version() == "A" and not slots.restart_wanted.is_set()


async def test_a_slot_that_does_not_confirm_is_reported_reverted(tmp_path: Path) -> None:
    slots, state = setup(tmp_path, broken={"B"})
    seen: list[UpdateProgress] = []
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    r = boot(slots, state, seen)  # B cannot confirm: the slots go back to A
    assert slots.running_version() == "A"
    await r.reconcile(want("B"), ready=True)
    assert r.progress is not None and r.progress.state == UpdateState.REVERTED
    assert r.progress.reason == "confirmation failed: B did not connect to the broker"
    await r.reconcile(want("B"), ready=True)  # not tried again
    assert r.progress.state == UpdateState.REVERTED and not slots.restart_wanted.is_set()


async def test_a_rollback_switches_to_the_previous_slot_without_a_download(
    tmp_path: Path,
) -> None:
    slots, state = setup(tmp_path)
    seen: list[UpdateProgress] = []
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    r = boot(slots, state, seen)
    await r.reconcile(want("B"), ready=True)
    seen.clear()
    back = DesiredSoftware(version="A", target="hemhub-hub-A.tar", campaign_id=CAMPAIGN)
    await r.reconcile(back, ready=True)
    assert [p.state for p in seen] == [UpdateState.CONFIRMING]
    r = boot(slots, state, seen)
    assert slots.running_version() == "A"
    await r.reconcile(back, ready=True)
    assert r.progress is not None and r.progress.state == UpdateState.CONFIRMED
    assert r.progress.version == "A"


async def test_a_restart_between_the_switch_and_its_record_still_confirms_or_reverts(
    tmp_path: Path,
) -> None:
    for broken in (set(), {"B"}):
        slots, state = setup(tmp_path / str(len(broken)), broken)
        seen: list[UpdateProgress] = []
        r = boot(slots, state, seen)
        install = slots.install

        def install_then_die(bundle: Path, install: Callable[[Path], None] = install) -> None:
            install(bundle)
            raise SystemExit("killed after the switch")

        slots.install = install_then_die  # type: ignore[method-assign]
        try:
            await r.reconcile(want("B"), ready=True)
        except SystemExit:
            pass
        slots.install = install  # type: ignore[method-assign]
        r = boot(slots, state, seen)
        assert r.progress is not None and r.progress.state == UpdateState.INSTALLING
        await r.reconcile(want("B"), ready=True)
        if broken:
            assert r.progress.state == UpdateState.REVERTED and slots.running_version() == "A"
            assert not slots.restart_wanted.is_set()  # no second try
        else:
            assert r.progress.state == UpdateState.CONFIRMED and slots.running_version() == "B"
            assert slots._load()["trying"] is False  # the trial slot was confirmed
