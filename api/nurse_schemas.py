"""Response and request models of the nurse's pages: triage queue, alert page, chart."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from api.schemas import Clock, Quantity, Thresholds, _In, _Out

Severity = Literal["critical", "high", "medium", "low"]


class ReasonValue(_Out):
    metric: str
    value: float | None
    unit: str


class ReasonEvent(_Out):
    kind: str
    dose_id: int | None = None
    slot: int | None = None


class ReasonParts(_Out):
    """Why the alert fired in codes and numbers (api.reason_parts); the UI words them."""

    kind: Literal["range", "sensor", "medication", "other"]
    #: The values measured, in the unit the device sent them.
    values: list[ReasonValue]
    #: The limits of the tier that fired (threshold version `rule_version`).
    limits: list[ReasonValue]
    direction: Literal["above", "below"] | None
    flags: list[str]
    event: ReasonEvent | None


class TriageAlert(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    patient_display_name: str
    #: The resident's principal (the caller's own, or one that shares the resident).
    principal: str
    programme: str
    care_unit_id: uuid.UUID | None
    care_unit_name: str | None
    rule: str
    rule_version: int
    severity: Severity
    status: Literal["open", "acknowledged", "resolved"]
    count: int
    measured_at: datetime
    opened_at: datetime
    last_at: datetime
    late: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution_note: str | None = None
    auto_resolved: bool = False
    reason_parts: ReasonParts
    #: The engine's English sentence (logs, CLI); the UI words `reason_parts` instead.
    reason: str


class CareUnitOption(_Out):
    id: uuid.UUID
    name: str


class TriageQueue(_Out):
    """The unresolved alerts the caller sees: open before acknowledged, each severity
    first (critical .. low), then the longest waiting first."""

    #: The server's clock, for "waiting for" (the browser's may be off).
    now: datetime
    alerts: list[TriageAlert]
    #: Unresolved alerts per severity within the filters (all, not only this page).
    counts: dict[Severity, int]
    total: int
    #: The filters the caller can choose from.
    care_units: list[CareUnitOption]
    programmes: list[str]


class NearbyReading(_Out):
    id: str
    measured_at: datetime
    measurement_type: str
    values: list[Quantity]
    status: list[str]
    event: dict[str, Any] | None
    clock: Clock
    #: Why the time of this reading deserves a word (None: nothing to say):
    #: "hub_clock_unsynced" (the hub had not checked its clock against internet time),
    #: "no_device_time" (the time is when the hub received it).
    time_note: Literal["hub_clock_unsynced", "no_device_time"] | None
    #: The reading that fired (or last repeated) the alert.
    fired: bool


class AlertEvent(_Out):
    at: datetime
    actor: str
    #: opened | repeated | acknowledged | resolved | auto_resolved
    action: str
    note: str | None = None
    count: int | None = None


class AlertPage(_Out):
    now: datetime
    alert: TriageAlert
    #: The resident's readings of the alert's measurement from 3 days before to 1 day
    #: after it, oldest first (at most 100).
    readings: list[NearbyReading]
    #: The threshold version that judged the reading (`alert.rule_version`).
    thresholds: Thresholds | None
    #: Who did what, oldest first.
    history: list[AlertEvent]


class AcknowledgeRequest(_In):
    note: Annotated[str, Field(max_length=2000)] | None = None


class ChartMissing(_Out):
    """A scheduled measurement and where it stands."""

    measurement_type: str
    every_s: float
    last_valid_at: datetime | None
    due_at: datetime
    #: Past due by more than the grace (the missing-data rule alerts).
    overdue: bool
    #: Readings since the last valid one where the device sent no value (a device error).
    error_readings: int
    error_flags: list[str]
    #: Stretches in the chart's period with no valid reading for longer than the schedule.
    gaps: list[dict[str, str]]


class ChartMarker(_Out):
    id: uuid.UUID
    measured_at: datetime
    rule: str
    severity: Severity
    status: str
    #: The charted metrics the rule is about.
    metrics: list[str]


class Chart(_Out):
    """A resident's measurements over a period, ready to draw.

    `series[metric]`: points {t, v} ascending (threshold units: mm[Hg], /min, kg, %,
    mmol/L); when `downsampled[metric]`, each point is the mean of a time bucket with
    {lo, hi, n}. `bands[metric]`: segments of threshold versions {from, to, version,
    above: [{severity, value}], below: [...]}. `weight_change`: {t, change} in kg against
    about 3 days before.
    """

    patient_id: uuid.UUID
    display_name: str
    programme: str
    care_unit_name: str | None
    days: int
    start: datetime
    end: datetime
    units: dict[str, str]
    series: dict[str, list[dict[str, Any]]]
    downsampled: dict[str, bool]
    weight_change: list[dict[str, Any]]
    bands: dict[str, list[dict[str, Any]]]
    markers: list[ChartMarker]
    missing: list[ChartMissing]
    #: How many readings in the period carry a time the hub could not vouch for.
    unsynced_readings: int


class AdherenceDay(_Out):
    date: str
    due: int
    taken: int
    late: int
    missed: int


class Adherence(_Out):
    patient_id: uuid.UUID
    time_zone: str
    days: list[AdherenceDay]
    #: Whether the resident has a medication robot's events at all (else: nothing to show).
    has_dispenser: bool
