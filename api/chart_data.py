"""A resident's chart data from stored rows (sans-I/O): series per measurement, the
threshold bands in force over the period, the weight's 3-day change, gaps, and the
medication calendar. The router fetches the rows; everything here is pure.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.reason_parts import METRIC_UNITS, metrics_of
from ingest.rules import RANGE_SPECS, event_kind
from ingest.thresholds import ThresholdBook

#: The charted metrics, in the order the page shows them.
CHART_METRICS = ("systolic", "diastolic", "pulse", "weight", "spo2", "glucose")

#: Above this many points a series is averaged into this many time buckets (each keeps
#: its min and max, so a spike still shows as a whisker).
MAX_POINTS = 300

#: The weight change is against the reading nearest to 3 days before, if one is within
#: this much of that instant (a daily weight: the one taken 3 days ago).
WEIGHT_CHANGE_DAYS = 3
WEIGHT_CHANGE_SLACK = timedelta(hours=18)


def _iso(t: datetime) -> str:
    return t.isoformat()


def series_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[datetime, float]]]:
    """metric -> [(measured_at, value in threshold units)] ascending, from readings rows
    (measured_at, values) in ascending time. A special value (None) is no point."""
    out: dict[str, list[tuple[datetime, float]]] = {m: [] for m in CHART_METRICS}
    for row in rows:
        for metric, value in metrics_of(row["values"]).items():
            if metric in out and value is not None and math.isfinite(value):
                out[metric].append((row["measured_at"], value))
    return out


def downsample(
    points: Sequence[tuple[datetime, float]], start: datetime, end: datetime, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """At most `limit` points: as they are, or the mean of each of `limit` equal time
    buckets with its min and max (lo, hi) and count (n). Returns (points, downsampled)."""
    if len(points) <= limit:
        return [{"t": _iso(t), "v": round(v, 2)} for t, v in points], False
    width = (end - start) / limit
    buckets: dict[int, list[tuple[datetime, float]]] = {}
    for t, v in points:
        index = min(limit - 1, max(0, int((t - start) / width)))
        buckets.setdefault(index, []).append((t, v))
    out = []
    for index in sorted(buckets):
        group = buckets[index]
        values = [v for _, v in group]
        middle = start + width * index + width / 2
        out.append(
            {
                "t": _iso(middle),
                "v": round(sum(values) / len(values), 2),
                "lo": round(min(values), 2),
                "hi": round(max(values), 2),
                "n": len(values),
            }
        )
    return out, True


def weight_change(points: Sequence[tuple[datetime, float]]) -> list[dict[str, Any]]:
    """Each weight with its change since about 3 days before (None when no reading near
    that instant): the number the heart-failure nurse looks at."""
    out = []
    for t, v in points:
        target = t - timedelta(days=WEIGHT_CHANGE_DAYS)
        best = min(
            (p for p in points if abs(p[0] - target) <= WEIGHT_CHANGE_SLACK),
            key=lambda p: abs(p[0] - target),
            default=None,
        )
        change = None if best is None else round(v - best[1], 2)
        out.append({"t": _iso(t), "change": change})
    return out


def bands(
    book: ThresholdBook, patient_id: uuid.UUID, start: datetime, end: datetime
) -> dict[str, list[dict[str, Any]]]:
    """metric -> the threshold versions in force over [start, end), each a segment
    {from, to, version, above: [{severity, value}], below: [...]} of its range limits
    (above: fires at or over the value; below: fires under it)."""
    breaks = sorted(
        {start}
        | {
            s.applies_from
            for s in book.overrides.get(patient_id, [])
            if s.applies_from is not None and start < s.applies_from < end
        }
    )
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in CHART_METRICS}
    for i, at in enumerate(breaks):
        until = breaks[i + 1] if i + 1 < len(breaks) else end
        eff = book.at(patient_id, at)
        limits: dict[str, dict[str, list[dict[str, Any]]]] = {
            m: {"above": [], "below": []} for m in CHART_METRICS
        }
        for rule, tiers in eff.thresholds.ranges.items():
            spec = RANGE_SPECS[rule]
            side = "above" if spec.above else "below"
            for severity, by_metric in tiers.items():
                for metric, value in by_metric.items():
                    if metric in limits:
                        limits[metric][side].append({"severity": str(severity), "value": value})
        for charted in CHART_METRICS:
            segment = {
                "from": _iso(at),
                "to": _iso(until),
                "version": eff.version,
                "above": sorted(limits[charted]["above"], key=lambda x: x["value"]),
                "below": sorted(limits[charted]["below"], key=lambda x: -x["value"]),
            }
            previous = out[charted][-1] if out[charted] else None
            if previous is not None and (previous["above"], previous["below"]) == (
                segment["above"],
                segment["below"],
            ):
                previous["to"] = segment["to"]  # same limits: one segment
            else:
                out[charted].append(segment)
    return out


def unit_of(metric: str) -> str:
    return METRIC_UNITS[metric]


# --- medication adherence ----------------------------------------------------------------

ADHERENCE_KINDS = {
    "dose_due": "due",
    "dose_taken": "taken",
    "dose_late": "late",
    "dose_missed": "missed",
}


def adherence_days(
    events: Iterable[tuple[datetime, str]], first: date, last: date, zone: ZoneInfo
) -> list[dict[str, Any]]:
    """One entry per local calendar day first..last: doses due, taken, late, missed
    (counts of the dispenser's events that day, in the principal's time zone)."""
    days: dict[date, dict[str, int]] = {}
    d = first
    while d <= last:
        days[d] = {"due": 0, "taken": 0, "late": 0, "missed": 0}
        d += timedelta(days=1)
    for at, kind in events:
        column = ADHERENCE_KINDS.get(event_kind(kind))
        local = at.astimezone(zone).date()
        if column is not None and local in days:
            days[local][column] += 1
    return [{"date": d.isoformat(), **counts} for d, counts in days.items()]


def gaps(
    times: Sequence[datetime], start: datetime, end: datetime, every: timedelta, grace: timedelta
) -> list[dict[str, str]]:
    """Stretches of [start, end) longer than `every` + `grace` with no valid reading."""
    allowed = every + grace
    out = []
    previous = start
    for t in [*times, end]:
        if t - previous > allowed:
            out.append({"from": _iso(previous), "to": _iso(t)})
        previous = max(previous, t)
    return out
