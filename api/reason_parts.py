"""Why an alert fired, as codes and numbers the web UI puts into words (sans-I/O).

The engine stores a reason as an English sentence (ingest.rules) for logs and the CLI; a
nurse's screen needs it in her language, in her units. So the parts are rebuilt here
from what the alert records: its rule, the reading that fired it (values, flags, device
event) and the threshold version that judged it (its limits for the alert's severity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ingest.rules import LOINC_METRIC, RANGE_SPECS, convert, event_kind
from ingest.thresholds import Thresholds

#: The unit each metric is charted and judged in (threshold units).
METRIC_UNITS: dict[str, str] = {
    "systolic": "mm[Hg]",
    "diastolic": "mm[Hg]",
    "pulse": "/min",
    "spo2": "%",
    "glucose": "mmol/L",
    "glucose_mg_dl": "mg/dL",
    "weight": "kg",
}


def metrics_of(values: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each metric of a reading's stored values in threshold units (the first value with
    one of the metric's LOINC codes; None for a device's special value)."""
    out: dict[str, float | None] = {}
    for q in values:
        metric = LOINC_METRIC.get(str(q.get("loinc")))
        if metric is None or metric in out:
            continue
        value = q.get("value")
        out[metric] = None if value is None else convert(float(value), str(q.get("unit")))
    return out


def _as_sent(values: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """The metric's value as the device sent it (its own unit: kPa, mg/dL...)."""
    for q in values:
        if LOINC_METRIC.get(str(q.get("loinc"))) == metric:
            return {"metric": metric, "value": q.get("value"), "unit": q.get("unit")}
    return None


def reason_parts(
    *,
    rule: str,
    severity: str,
    values: Sequence[Mapping[str, Any]] | None,
    status: Sequence[str] | None,
    event: Mapping[str, Any] | None,
    thresholds: Thresholds | None,
) -> dict[str, Any]:
    """{kind, values, limits, direction, flags, event}: what fired, in codes and numbers.

    kind: "range" (a value crossed a limit: `values` as measured, `limits` of the tier
    that fired, `direction` above|below), "sensor" (the device flagged the reading:
    `flags`), "medication" (a dispenser event: `event`), or "other" (time-driven and
    technical rules: their rule code says it all; the UI adds the time).
    """
    parts: dict[str, Any] = {
        "kind": "other",
        "values": [],
        "limits": [],
        "direction": None,
        "flags": [],
        "event": None,
    }
    spec = RANGE_SPECS.get(rule)
    if spec is not None:
        parts["kind"] = "range"
        parts["direction"] = "above" if spec.above else "below"
        sent = [_as_sent(values or [], m) for m in spec.metrics]
        parts["values"] = [v for v in sent if v is not None]
        ranges: Mapping[Any, Mapping[Any, Mapping[Any, float]]] = (
            thresholds.ranges if thresholds is not None else {}
        )
        tiers = ranges.get(rule, {})
        limits: Mapping[Any, float] = next(
            (lim for sev, lim in tiers.items() if str(sev) == severity), {}
        )
        in_mg_dl = any(v["unit"] == "mg/dL" for v in parts["values"])
        for m in spec.metrics:
            alt = next((a for a in spec.alt if a in limits), None)
            if in_mg_dl and alt is not None:
                parts["limits"].append({"metric": m, "value": limits[alt], "unit": "mg/dL"})
            elif m in limits:
                parts["limits"].append({"metric": m, "value": limits[m], "unit": METRIC_UNITS[m]})
        return parts
    if rule.startswith("sensor_status_") or (thresholds is not None and rule in thresholds.flags):
        parts["kind"] = "sensor"
        parts["flags"] = list(status or [])
        return parts
    if event is not None and (rule.startswith("medication_") or rule == "dispenser_battery_low"):
        parts["kind"] = "medication"
        parts["event"] = {
            "kind": event_kind(str(event.get("kind"))),
            "dose_id": event.get("dose_id"),
            "slot": event.get("slot"),
        }
    return parts
