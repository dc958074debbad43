"""The rollout campaign's decision (sans-I/O): given the campaign, its targets' states and
what their hubs report, what to do next.

`decide` is a pure function: `ingest.campaigns.tick` reads the inputs from the database,
calls it, and writes what it decided (targets confirmed or failed, desired state issued
to the next hubs, the wave advanced, the campaign paused with its reason or completed).

The health gate of a wave (docs/firmware.md): every target of the waves so far
either confirmed (the hub reports the new version as confirmed and is online) or failed;
any failure (failed, reverted, not confirmed within the campaign's time) pauses the
campaign with the reason; so does a confirmed target whose devices had more failed
sessions or error readings since it was asked than the campaign's margins, whose hub is
offline, or that went silent: nothing reported (a hub's status, a device seen or read
by its hub) for longer than the campaign's silence window. Only a wave
that passes its gate lets the next one start; the next hubs are asked inside the window
of their home's local time, at most `max_parallel` in flight at once.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


class TargetState(enum.StrEnum):
    PENDING = "pending"
    ISSUED = "issued"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled_back"
    RESTORED = "restored"


class Action(enum.StrEnum):
    WAIT = "wait"
    ADVANCE = "advance"
    PAUSE = "pause"
    COMPLETE = "complete"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Campaign:
    state: CampaignState
    version: str
    #: Cumulative percentages of the targets, e.g. (1, 10, 50, 100).
    waves: tuple[int, ...]
    wave: int
    max_parallel: int
    confirm_timeout: timedelta
    margin_failed_sessions: int
    margin_error_readings: int
    #: A confirmed target that reports nothing for longer than this fails the gate
    #: (None: not checked).
    silence_window: timedelta | None = None


@dataclass(frozen=True)
class Target:
    """One hub (hub software; address "") or one device behind a hub (firmware)."""

    hub_id: str
    address: str
    wave: int
    state: TargetState
    issued_at: datetime | None = None
    from_version: str | None = None
    #: Inside the campaign's window in the home's local time, now.
    in_window: bool = True
    online: bool = False
    #: The version the hub (device) reports running.
    running: str | None = None
    #: The update progress it reports for this campaign: (state, reason), if any.
    progress: tuple[str, str | None] | None = None
    #: Failed sessions of the hub's devices (the device's) since the target was asked.
    failed_sessions: int = 0
    #: Error readings of the hub's devices (the device's) since the target was asked.
    error_readings: int = 0
    #: When it last reported: the hub's last status (hub software), the device's last
    #: advertisement or reading its hub saw (firmware). None: never.
    last_report_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.hub_id, self.address)

    @property
    def name(self) -> str:
        return f"hub {self.hub_id}" + (f" device {self.address}" if self.address else "")


@dataclass(frozen=True)
class Plan:
    """What to do: mark targets, ask the next ones, and the campaign's own step."""

    action: Action = Action.WAIT
    reason: str | None = None
    confirm: tuple[tuple[str, str], ...] = ()
    fail: tuple[tuple[tuple[str, str], str], ...] = ()
    restore: tuple[tuple[str, str], ...] = ()
    issue: tuple[tuple[str, str], ...] = ()
    #: Details for the campaign's event log.
    detail: dict[str, object] = field(default_factory=dict)


def wave_sizes(total: int, waves: Sequence[int]) -> list[int]:
    """How many targets are in waves 0..n, cumulatively: ceil(percent * total), at least
    one in the first wave (a canary), never decreasing, the last one all of them."""
    sizes: list[int] = []
    for i, percent in enumerate(waves):
        n = total if i == len(waves) - 1 else math.ceil(percent * total / 100)
        n = max(n, 1 if total else 0, sizes[-1] if sizes else 0)
        sizes.append(min(n, total))
    return sizes


def assign_waves(keys: Sequence[str], waves: Sequence[int]) -> dict[str, int]:
    """The wave of each target key; `keys` in the campaign's order (ingest.campaigns
    orders them by a hash of the campaign and the key: no principal's first hubs always
    go first)."""
    sizes = wave_sizes(len(keys), waves)
    result: dict[str, int] = {}
    for index, key in enumerate(keys):
        result[key] = next(w for w, size in enumerate(sizes) if index < size)
    return result


def in_window(local_now: time, start: time | None, end: time | None) -> bool:
    """Whether a local time is inside [start, end); a window may span midnight
    (22:00-05:00). No window: always."""
    if start is None or end is None:
        return True
    if start <= end:
        return start <= local_now < end
    return local_now >= start or local_now < end


def _outcome(c: Campaign, t: Target, now: datetime) -> tuple[str, str | None] | None:
    """("confirmed" | "failed", reason) for an issued target that finished, else None."""
    if t.progress is not None and t.progress[0] in ("failed", "reverted"):
        return "failed", f"{t.progress[0]}: {t.progress[1] or 'no reason given'}"
    progress_ok = t.progress is None or t.progress[0] == "confirmed"
    if t.online and t.running == c.version and progress_ok:
        return "confirmed", None
    if t.issued_at is not None and now - t.issued_at > c.confirm_timeout:
        seen = f"runs {t.running or 'unknown'}, {'online' if t.online else 'offline'}"
        return "failed", f"not confirmed within {int(c.confirm_timeout.total_seconds())} s ({seen})"
    return None


def _silent_for(c: Campaign, t: Target, now: datetime) -> timedelta | None:
    """How long a target has been silent, when longer than the campaign's window. Its
    silence counts from its last report, but never from before it was asked."""
    if c.silence_window is None:
        return None
    since = max((at for at in (t.last_report_at, t.issued_at) if at is not None), default=None)
    if since is None or now - since <= c.silence_window:
        return None
    return now - since


def _unhealthy(c: Campaign, t: Target, now: datetime) -> str | None:
    if t.failed_sessions > c.margin_failed_sessions:
        return (
            f"{t.name}: {t.failed_sessions} failed session(s) since the update"
            f" (margin {c.margin_failed_sessions})"
        )
    if t.error_readings > c.margin_error_readings:
        return (
            f"{t.name}: {t.error_readings} error reading(s) since the update"
            f" (margin {c.margin_error_readings})"
        )
    if not t.online:
        return f"{t.name}: offline after the update"
    silent = _silent_for(c, t, now)
    if silent is not None:
        window = int(c.silence_window.total_seconds()) if c.silence_window else 0
        return (
            f"{t.name}: silent for {int(silent.total_seconds())} s after the update"
            f" (window {window} s)"
        )
    return None


def decide(c: Campaign, targets: Sequence[Target], now: datetime) -> Plan:
    """The next step of the campaign (see the module's docstring)."""
    if c.state == CampaignState.ROLLING_BACK:
        return _rolling_back(targets)
    if c.state != CampaignState.RUNNING:
        return Plan()
    confirm: list[tuple[str, str]] = []
    fail: list[tuple[tuple[str, str], str]] = []
    states = {t.key: t.state for t in targets}
    for t in targets:
        if t.state != TargetState.ISSUED:
            continue
        outcome = _outcome(c, t, now)
        if outcome is None:
            continue
        if outcome[0] == "confirmed":
            confirm.append(t.key)
            states[t.key] = TargetState.CONFIRMED
        else:
            fail.append((t.key, outcome[1] or "failed"))
            states[t.key] = TargetState.FAILED
    if fail:
        first = next(t for t in targets if t.key == fail[0][0])
        more = f" (and {len(fail) - 1} more)" if len(fail) > 1 else ""
        return Plan(
            Action.PAUSE,
            f"{first.name}: {fail[0][1]}{more}",
            tuple(confirm),
            tuple(fail),
            detail={"failed": [f"{k[0]}{'/' + k[1] if k[1] else ''}" for k, _ in fail]},
        )
    for t in targets:
        if states[t.key] == TargetState.CONFIRMED and t.wave <= c.wave:
            reason = _unhealthy(c, t, now)
            if reason is not None:
                return Plan(Action.PAUSE, reason, tuple(confirm))
    so_far = [t for t in targets if t.wave <= c.wave]
    open_ = [t for t in so_far if states[t.key] in (TargetState.PENDING, TargetState.ISSUED)]
    if not open_:
        if c.wave >= len(c.waves) - 1 or not any(t.wave > c.wave for t in targets):
            return Plan(Action.COMPLETE, None, tuple(confirm))
        return Plan(Action.ADVANCE, None, tuple(confirm), detail={"wave": c.wave + 1})
    in_flight = sum(1 for t in so_far if states[t.key] == TargetState.ISSUED)
    room = max(c.max_parallel - in_flight, 0)
    ready = sorted(
        (t for t in open_ if states[t.key] == TargetState.PENDING and t.in_window),
        key=lambda t: (t.wave, t.hub_id, t.address),
    )
    issue = tuple(t.key for t in ready[:room])
    return Plan(Action.WAIT, None, tuple(confirm), issue=issue)


def _rolling_back(targets: Sequence[Target]) -> Plan:
    """Targets asked back to their previous version are restored once they run it."""
    restore = tuple(
        t.key
        for t in targets
        if t.state == TargetState.ROLLED_BACK
        and t.online
        and t.from_version is not None
        and t.running == t.from_version
    )
    left = [t for t in targets if t.state == TargetState.ROLLED_BACK and t.key not in set(restore)]
    if not left:
        return Plan(Action.ROLLED_BACK, None, restore=restore)
    return Plan(Action.WAIT, None, restore=restore, detail={"waiting": len(left)})
