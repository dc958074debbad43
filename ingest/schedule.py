"""The scheduled evaluation: rules driven by time rather than by an arriving reading.

`run_scheduled_evaluation(conn, now)` (wire it to `hemhub alerts evaluate` and run it
every few minutes; it is idempotent and safe to run concurrently, the alerts'
unique index serialising the writers):

- missing data: per monitoring schedule ("BP daily"), no valid measurement within the
  interval plus grace; the reason says why, from the hub status (hubs.last_status):
  hub offline, device error readings / a device error reported by the hub, device not
  seen by the hub, device seen but no measurement;
- technical: hub offline beyond the limit, outbox backlog, device battery low;
- trends at `now` (weight gain), late doses dropping out of their window: clears;
- every state rule clears (auto-resolves) when its condition is gone.

A condition still present touches its alert only when the reason or severity changed
(no count, no NOTIFY otherwise), so running this every minute makes no noise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
from pydantic import ValidationError

from hemhub.contract import DeviceHealth, DeviceProfile, HubAlarm, HubStatus
from ingest import alerts, engine, thresholds
from ingest.alerts import Clear, Conn, Finding, Severity, _fmt_number, _fmt_time
from ingest.rules import counts_within, flags_note, flags_within
from ingest.thresholds import Effective

#: A hub that sent no status for this long is offline even if its last one said online
#: (hubs publish status every minute; the last will may be lost with the broker).
STATUS_STALE_AFTER = timedelta(minutes=10)

PROFILE_MEASUREMENT = {
    DeviceProfile.BLOOD_PRESSURE: "blood_pressure",
    DeviceProfile.WEIGHT_SCALE: "body_weight",
    DeviceProfile.PULSE_OXIMETER: "pulse_oximetry",
    DeviceProfile.GLUCOSE: "glucose",
    DeviceProfile.DISPENSER: "medication_event",
}

ASSIGNED_SQL = """
SELECT da.patient_id, da.tenant_id, upper(d.address)
FROM device_assignments da JOIN devices d ON d.id = da.device_id
WHERE da.started_at <= %(now)s AND (da.ended_at IS NULL OR da.ended_at > %(now)s)
"""

#: The hubs that report the addresses now (their last status lists them), and those that
#: reported them last (device_last_hub: a last will lists no devices).
HUBS_SQL = """
SELECT h.id, h.online, h.last_status::text, h.last_status_at FROM hubs h
WHERE h.last_status IS NOT NULL AND (EXISTS (
    SELECT 1 FROM jsonb_array_elements(coalesce(h.last_status->'devices', '[]'::jsonb)) dev
    WHERE upper(dev->>'address') = ANY(%(addresses)s))
  OR h.id IN (SELECT hub_id FROM device_last_hub WHERE address = ANY(%(addresses)s)))
"""

#: Which hub last reported each address, in a reading or its status (ingest.pipeline).
LAST_HUB_SQL = """
SELECT address, hub_id, profile FROM device_last_hub WHERE address = ANY(%(addresses)s)
"""

#: The technical rules: about a resident's devices and the hubs reporting them, so they
#: end with the assignment of the device (`returned`).
TECHNICAL_RULES = (
    "hub_offline",
    "hub_outbox_backlog",
    "hub_fault",
    "device_battery_low",
    "dispenser_battery_low",
)

#: Hub alarms that put a resident's readings at risk without the hub being offline: the
#: radio stopped answering (devices are not read), the disk is nearly full (readings
#: cannot be stored). Not clock_not_synced: every reading carries its clock trust, and
#: a hub that cannot tell whether its clock is synchronised would alert for ever.
HUB_FAULT_ALARMS = (HubAlarm.ADAPTER_UNRESPONSIVE, HubAlarm.DISK_LOW)

#: Active technical alerts of residents who gave back a device after the alert's
#: condition began (assignment ended, device not assigned to them again): the devices.
RETURNED_SQL = """
SELECT a.patient_id, a.rule,
       string_agg(DISTINCT upper(d.address), ', ' ORDER BY upper(d.address)), max(da.ended_at)
FROM alerts a
JOIN device_assignments da ON da.patient_id = a.patient_id
JOIN devices d ON d.id = da.device_id
WHERE a.status <> 'resolved' AND a.rule = ANY(%(rules)s)
  AND da.ended_at IS NOT NULL AND da.ended_at <= %(now)s AND da.ended_at >= a.measured_at
  AND NOT EXISTS (
      SELECT 1 FROM device_assignments cur
      WHERE cur.device_id = da.device_id AND cur.patient_id = da.patient_id
        AND cur.started_at <= %(now)s AND (cur.ended_at IS NULL OR cur.ended_at > %(now)s))
GROUP BY a.patient_id, a.rule
"""

_VALID = """(r.event IS NOT NULL OR jsonb_path_exists(r."values", '$[*] ? (@.value != null)'))"""

SCHEDULES_SQL = f"""
SELECT s.patient_id, p.tenant_id, s.measurement_type, s.every, s.starts_at,
       lv.at AS last_valid, le.n AS errors, le.last AS last_error_at
FROM monitoring_schedules s JOIN patients p ON p.id = s.patient_id
LEFT JOIN LATERAL (
    SELECT r.measured_at AS at FROM readings r
    WHERE r.patient_id = s.patient_id AND r.measurement_type = s.measurement_type
      AND r.measured_at <= %(now)s AND {_VALID}
    ORDER BY r.measured_at DESC LIMIT 1
) lv ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS n, max(r.measured_at) AS last FROM readings r
    WHERE r.patient_id = s.patient_id AND r.measurement_type = s.measurement_type
      AND r.measured_at > coalesce(lv.at, s.starts_at) AND r.measured_at <= %(now)s
      AND NOT {_VALID}
) le ON true
WHERE s.active AND s.starts_at <= %(now)s AND p.deactivated_at IS NULL
ORDER BY s.patient_id, s.measurement_type
"""

UPSERT_SCHEDULE_SQL = """
INSERT INTO monitoring_schedules
    (patient_id, measurement_type, every, starts_at, active, created_by)
VALUES (%s, %s, %s, coalesce(%s, now()), %s, %s)
ON CONFLICT (patient_id, measurement_type) DO UPDATE SET
    every = EXCLUDED.every, starts_at = EXCLUDED.starts_at, active = EXCLUDED.active,
    created_by = EXCLUDED.created_by, created_at = now()
"""


def set_schedule(
    conn: Conn,
    patient_id: UUID,
    measurement_type: str,
    every: timedelta,
    *,
    created_by: str,
    starts_at: datetime | None = None,
    active: bool = True,
) -> None:
    """Expect `measurement_type` from the resident every `every` (e.g. blood_pressure, 1 day)."""
    conn.execute(
        UPSERT_SCHEDULE_SQL,
        (patient_id, measurement_type, every, starts_at, active, created_by),
    )


@dataclass(frozen=True)
class Hub:
    id: str
    status: HubStatus
    status_at: datetime

    def offline_since(self, now: datetime) -> datetime | None:
        """When the hub went quiet (its last status), or None while it is online."""
        if not self.status.online or now - self.status_at > STATUS_STALE_AFTER:
            return self.status_at
        return None


Seen = tuple[Hub, DeviceHealth]


def _fmt_period(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        n = int(hours // 24)
        return f"{n} day" + ("s" if n != 1 else "")
    return f"{_fmt_number(hours)} h"


def _when(at: datetime | None) -> str:
    return "never" if at is None else _fmt_time(at)


def missing_cause(
    seen: list[Seen],
    errors: int,
    last_error_at: datetime | None,
    since: datetime,
    due: datetime,
    now: datetime,
) -> str:
    """Why no valid measurement arrived since `since` (one was due at `due`), from what
    the hubs report."""
    if not seen:
        return "no hub reports the resident's device (not on any hub's allow-list)"
    offline = [(hub, hub.offline_since(now)) for hub, _ in seen]
    if all(at is not None for _, at in offline):
        hub, at = offline[0]
        return f"hub {hub.id} offline since {_when(at)}"
    if errors:
        return (
            f"device error readings: {errors} without a valid value since {_fmt_time(since)},"
            f" last at {_when(last_error_at)}"
        )
    for hub, health in seen:
        if health.last_error and health.consecutive_failures:
            return (
                f"device {health.address} failing on hub {hub.id}:"
                f" {health.last_error} ({health.consecutive_failures} failed sessions)"
            )
    hub, health = max(seen, key=_freshness)
    if health.last_seen_at is None or health.last_seen_at < due:
        return (
            f"device {health.address} not seen by hub {hub.id} since {_when(health.last_seen_at)}"
        )
    return (
        f"device {health.address} seen by hub {hub.id} at {_fmt_time(health.last_seen_at)}"
        f" but no measurement taken (last reading on the hub {_when(health.last_reading_at)})"
    )


@dataclass
class _Context:
    now: datetime
    book: thresholds.ThresholdBook
    tenant_of: dict[UUID, str]
    #: patient -> what the hubs report of their devices
    seen: dict[UUID, list[Seen]]
    #: (patient, technical rule) of an active alert -> why a returned device clears it
    returned: dict[tuple[UUID, str], str]


def _freshness(seen: Seen) -> tuple[datetime, datetime]:
    """Which hub's report of a device to trust: the one that saw it last."""
    hub, health = seen
    return (health.last_seen_at or datetime.min.replace(tzinfo=UTC), hub.status_at)


def _load_context(conn: Conn, now: datetime) -> _Context:
    assigned = conn.execute(ASSIGNED_SQL, {"now": now}).fetchall()
    addresses = sorted({a for _, _, a in assigned})
    hubs: list[Hub] = []
    for hub_id, _online, status, status_at in conn.execute(
        HUBS_SQL, {"addresses": addresses}
    ).fetchall():
        try:
            # from JSON: the wire models are strict, and times and enums are strings there
            hubs.append(Hub(hub_id, HubStatus.model_validate_json(status), status_at))
        except ValidationError:
            continue  # a status of another schema version: nothing to judge by
    best: dict[str, Seen] = {}
    for hub in hubs:
        for health in hub.status.devices:
            key = health.address.upper()
            old = best.get(key)
            if old is None or _freshness((hub, health)) > _freshness(old):
                best[key] = (hub, health)
    # A hub gone silent (its last will lists no devices) still reports its devices: the
    # hub that reported a device last, while it is offline, is why its data is missing.
    by_id = {hub.id: hub for hub in hubs}
    for address, hub_id, profile in conn.execute(LAST_HUB_SQL, {"addresses": addresses}).fetchall():
        last = by_id.get(hub_id)
        if address not in best and last is not None and last.offline_since(now) is not None:
            best[address] = (last, DeviceHealth(address=address, profile=DeviceProfile(profile)))
    seen: dict[UUID, list[Seen]] = {}
    tenant_of: dict[UUID, str] = {}
    for patient_id, tenant_id, address in assigned:
        pid = UUID(str(patient_id))
        tenant_of[pid] = tenant_id
        seen.setdefault(pid, [])
        if address in best:
            seen[pid].append(best[address])
    returned = {
        (UUID(str(patient_id)), rule): f"device returned: {addresses} (assignment ended"
        f" {_fmt_time(ended_at)})"
        for patient_id, rule, addresses, ended_at in conn.execute(
            RETURNED_SQL, {"rules": list(TECHNICAL_RULES), "now": now}
        ).fetchall()
    }
    return _Context(now, thresholds.load(conn, tenant_of), tenant_of, seen, returned)


def _state(
    ctx: _Context,
    patient_id: UUID,
    eff: Effective,
    rule: str,
    severity: Severity,
    reason: str,
    since: datetime,
) -> Finding:
    return Finding(
        rule=rule,
        version=eff.version,
        severity=severity,
        patient_id=patient_id,
        tenant_id=ctx.tenant_of[patient_id],
        reading_key=None,
        measured_at=since,
        late=False,
        reason=reason,
        threshold_set_id=eff.set_id,
        counts=False,
    )


def _technical(ctx: _Context) -> tuple[list[Finding], list[Clear]]:
    findings: list[Finding] = []
    clears: list[Clear] = []
    now = ctx.now

    def clear(rule: str, patient_id: UUID, note: str) -> None:
        # A device given back ends what it caused; the note says so.
        clears.append(Clear(rule, patient_id, ctx.returned.get((patient_id, rule), note), False))

    for patient_id, seen in ctx.seen.items():
        tech = ctx.book.at(patient_id, now).thresholds.technical
        eff = ctx.book.at(patient_id, now)
        hubs = {hub.id: hub for hub, _ in seen}.values()
        offline = [(h, at) for h in hubs if (at := h.offline_since(now)) is not None]
        down = [(h, at) for h, at in offline if now - at >= timedelta(hours=tech.hub_offline_hours)]
        if down:
            hub, at = down[0]
            limit = _fmt_number(tech.hub_offline_hours)
            reason = f"hub {hub.id} offline since {_fmt_time(at)} (limit {limit} h)"
            findings.append(
                _state(ctx, patient_id, eff, "hub_offline", tech.hub_offline_severity, reason, at)
            )
        elif len(offline) < len(hubs) or not hubs or (patient_id, "hub_offline") in ctx.returned:
            clear("hub_offline", patient_id, f"hub online at {_fmt_time(now)}")
        backlog = []
        for hub in hubs:
            s = hub.status
            age = (s.outbox_oldest_age_s or 0) / 3600
            full = {HubAlarm.OUTBOX_NEAR_FULL, HubAlarm.OUTBOX_FULL} & set(s.alarms)
            if (s.outbox_depth or 0) >= tech.outbox_depth or age >= tech.outbox_age_hours or full:
                alarms = f", alarms {', '.join(sorted(full))}" if full else ""
                backlog.append(
                    f"hub {hub.id} outbox {s.outbox_depth or 0} readings, oldest"
                    f" {_fmt_number(round(age, 1))} h{alarms}"
                )
        if backlog:
            findings.append(
                _state(
                    ctx,
                    patient_id,
                    eff,
                    "hub_outbox_backlog",
                    tech.outbox_severity,
                    "; ".join(backlog),
                    now,
                )
            )
        else:
            clear("hub_outbox_backlog", patient_id, "outbox drained")
        faults = [
            f"hub {hub.id}: {', '.join(a for a in HUB_FAULT_ALARMS if a in hub.status.alarms)}"
            for hub in hubs
            if set(HUB_FAULT_ALARMS) & set(hub.status.alarms) and hub.offline_since(now) is None
        ]  # an offline hub's last alarms are stale: hub_offline speaks for it
        if faults:
            findings.append(
                _state(
                    ctx, patient_id, eff, "hub_fault", tech.hub_fault_severity,
                    "; ".join(faults), now,
                )
            )  # fmt: skip
        else:
            clear("hub_fault", patient_id, "no hub alarm")
        known = [h for _, h in seen if h.battery_level is not None]
        low = [
            h
            for h in known
            if h.battery_level is not None and h.battery_level <= tech.battery_percent
        ]
        if low:
            reason = "; ".join(
                f"device {h.address} ({h.profile}) battery {h.battery_level} %"
                f" (limit {tech.battery_percent} %)"
                for h in low
            )
            findings.append(
                _state(
                    ctx, patient_id, eff, "device_battery_low", tech.battery_severity, reason, now
                )
            )
        elif known or (patient_id, "device_battery_low") in ctx.returned:
            clear("device_battery_low", patient_id, "battery above the limit")
        # The robot's own low_battery event (ingest.rules): cleared by what the hub
        # reports of the resident's dispensers only, never by another device's battery.
        robots = [h for h in known if h.profile == DeviceProfile.DISPENSER]
        if robots and not any(h in low for h in robots):
            levels = ", ".join(f"{h.address} {h.battery_level} %" for h in robots)
            clear("dispenser_battery_low", patient_id, f"dispenser battery {levels}")
        elif not robots and (patient_id, "dispenser_battery_low") in ctx.returned:
            clear("dispenser_battery_low", patient_id, "")
    # Residents with no device any more: every technical alert ends with the return.
    for (patient_id, rule), note in ctx.returned.items():
        if patient_id not in ctx.seen:
            clears.append(Clear(rule, patient_id, note, False))
    return findings, clears


def _missing_data(conn: Conn, ctx: _Context) -> tuple[list[Finding], list[Clear]]:
    findings: list[Finding] = []
    clears: list[Clear] = []
    now = ctx.now
    rows = conn.execute(SCHEDULES_SQL, {"now": now}).fetchall()
    for patient_id, tenant_id, mtype, every, starts_at, last_valid, errors, last_error_at in rows:
        pid = UUID(str(patient_id))
        ctx.tenant_of.setdefault(pid, tenant_id)
        if pid not in ctx.book.programme_of:
            ctx.book = thresholds.load(conn, [*ctx.book.programme_of, pid])
        eff = ctx.book.at(pid, now)
        rule = engine.missing_rule(mtype)
        since = last_valid or starts_at
        due = since + every
        if now <= due + timedelta(hours=eff.thresholds.missing_data.grace_hours):
            clears.append(Clear(rule, pid, f"{mtype} measured at {_when(last_valid)}", False))
            continue
        seen = [s for s in ctx.seen.get(pid, []) if PROFILE_MEASUREMENT.get(s[1].profile) == mtype]
        cause = missing_cause(seen, errors or 0, last_error_at, since, due, now)
        head = (
            f"no {mtype} measurement since {_fmt_time(last_valid)}"
            if last_valid is not None
            else f"no {mtype} measurement yet"
        )
        reason = f"{head} (expected every {_fmt_period(every)}): {cause}"
        findings.append(
            _state(ctx, pid, eff, rule, eff.thresholds.missing_data.severity, reason, due)
        )
    return findings, clears


def _series_rules(conn: Conn, ctx: _Context) -> tuple[list[Finding], list[Clear]]:
    """Weight-gain trends and late doses judged at `now` (the windows slide)."""
    findings: list[Finding] = []
    clears: list[Clear] = []
    now = ctx.now
    effs = {p: ctx.book.at(p, now) for p in ctx.tenant_of}
    trend_days = [t.days for e in effs.values() for t in engine.enabled_trends(e)]
    if trend_days:
        weights = engine.load_weights(conn, effs, now - timedelta(days=max(trend_days)), now)
        for p, eff in effs.items():
            fired, cl = engine.judge_weight_trend(weights.get(p), now, eff, p)
            clears += cl
            for name, e, severity, reason in fired:
                newest = weights[p].at[-1]
                findings.append(_state(ctx, p, e, name, severity, reason, newest))
    longest = max((e.thresholds.medication.late_days for e in effs.values()), default=0)
    if effs:
        late = engine.load_late_doses(conn, effs, now - timedelta(days=longest), now)
        for p, eff in effs.items():
            med = eff.thresholds.medication
            s = late.get(p)
            n = (
                0
                if s is None
                else int(
                    counts_within(s.seconds, np.array([now.timestamp()]), med.late_days * 86400.0)[
                        0
                    ]
                )
            )
            if n < med.late_count:
                note = (
                    f"{n} late doses within {_fmt_number(med.late_days)} days at {_fmt_time(now)}"
                )
                clears.append(Clear("medication_doses_late", p, note, True, now))
    clears += _flags_cleared(conn, ctx, effs)
    return findings, clears


def _flags_cleared(conn: Conn, ctx: _Context, effs: dict[UUID, Effective]) -> list[Clear]:
    """Device-flag alerts whose window no longer holds `count` flagged readings clear
    (clinical: once acknowledged). Only residents with such an alert are looked at."""
    active = alerts.active_rules(conn, effs)
    todo = [
        (p, name, rule)
        for p, rules in active.items()
        for name, rule in effs[p].thresholds.flags.items()
        if name in rules
    ]
    if not todo:
        return []
    now = ctx.now
    longest = max(rule.days for _, _, rule in todo)
    flags = {f for _, _, rule in todo for f in rule.flags}
    flagged = engine.load_flagged(
        conn, {p for p, _, _ in todo}, flags, now - timedelta(days=longest), now
    )
    clears: list[Clear] = []
    for p, name, rule in todo:
        n = flags_within(flagged.get(p, []), rule, now)
        if n < rule.count:
            clears.append(Clear(name, p, flags_note(rule, n, now), True, now))
    return clears


def run_scheduled_evaluation(conn: Conn, now: datetime) -> dict[str, Any]:
    """Evaluate the time-driven rules at `now` in one transaction; return counts
    (opened, updated, resolved, patients, schedules)."""
    with conn.transaction():
        ctx = _load_context(conn, now)
        findings: list[Finding] = []
        clears: list[Clear] = []
        for f, cl in (_technical(ctx), _missing_data(conn, ctx), _series_rules(conn, ctx)):
            findings += f
            clears += cl
        outcome = alerts.apply(conn, findings) + alerts.resolve(conn, clears)
    by_rule = Counter(f.rule for f in findings)
    return {
        "opened": outcome.opened,
        "updated": outcome.updated,
        "resolved": outcome.resolved,
        "patients": len(ctx.tenant_of),
        "conditions": dict(by_rule),
    }
