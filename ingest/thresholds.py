"""Versioned alert thresholds: the document, its programme defaults and residents' overrides.

A resident's thresholds at an instant are the override (table `threshold_sets`) with
the highest version among those whose `applies_from` is not after that instant, else
their programme's built-in profile (ingest.programmes) at `PROFILE_VERSION`. So a
reading is always judged by the thresholds in force when it was *measured* (a late
backlog reading by the old ones), and a retroactive correction (a new version applying
from an earlier date) wins over the versions it corrects.

Every alert records the version (alerts.rule_version) and the set (threshold_set_id,
NULL for the programme profile) that judged it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ingest import programmes
from ingest.alerts import Severity

Conn = psycopg.Connection[Any]

#: glucose is in mmol/L; glucose_mg_dl, the same limit as the guideline words it in
#: mg/dL, judges readings sent in mg/dL (a tier that has it must have glucose too).
Metric = Literal["systolic", "diastolic", "pulse", "spo2", "glucose", "glucose_mg_dl", "weight"]
RangeRuleName = Literal[
    "blood_pressure_high",
    "blood_pressure_low",
    "pulse_high",
    "pulse_low",
    "spo2_low",
    "glucose_high",
    "glucose_low",
    "weight_high",
    "weight_low",
]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Hours = Annotated[float, Field(gt=0, le=24 * 365)]
Limit = Annotated[float, Field(allow_inf_nan=False)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightGain(_Doc):
    """Fires when the weight rose by more than `kg` within `days` (lowest to newest),
    while `enabled` (a clinician turns a programme's switched-off trend on)."""

    kind: Literal["weight_gain"] = "weight_gain"
    kg: Positive
    days: Annotated[float, Field(gt=0, le=30)]
    severity: Severity = Severity.HIGH
    enabled: bool = True


class DeviceFlag(_Doc):
    """Fires for a reading carrying one of `flags` (a device's clinical finding, e.g.
    irregular_pulse) once `count` such readings fall within `days`."""

    kind: Literal["device_flag"] = "device_flag"
    flags: tuple[Annotated[str, Field(max_length=48)], ...] = Field(min_length=1)
    count: Annotated[int, Field(ge=1, le=100)] = 1
    days: Annotated[float, Field(gt=0, le=90)] = 7
    severity: Severity = Severity.LOW


def _default_flags() -> dict[str, DeviceFlag]:
    return {name: DeviceFlag.model_validate(rule) for name, rule in programmes.flag_rules().items()}


class MissingData(_Doc):
    severity: Severity = Severity.MEDIUM
    #: Slack after the scheduled interval before a missing measurement alerts.
    grace_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 6


class Technical(_Doc):
    hub_offline_hours: Hours = 6
    hub_offline_severity: Severity = Severity.MEDIUM
    outbox_depth: Annotated[int, Field(ge=1)] = 500
    outbox_age_hours: Hours = 6
    outbox_severity: Severity = Severity.LOW
    #: A hub reporting adapter_unresponsive or disk_low.
    hub_fault_severity: Severity = Severity.MEDIUM
    battery_percent: Annotated[int, Field(ge=1, le=100)] = 20
    battery_severity: Severity = Severity.LOW
    sensor_severity: Severity = Severity.LOW
    #: Reading status flags that make the measurement doubtful (cuff loose, low perfusion).
    sensor_flags: tuple[Annotated[str, Field(max_length=48)], ...] = (
        "cuff_too_loose",
        "body_movement",
        "improper_position",
        "low_perfusion",
        "sensor_displaced",
        "sensor_disconnected",
        "sensor_unconnected_to_user",
        "sensor_malfunctioning",
        "equipment_malfunction",
        "invalid_measurement",
        "questionable_measurement",
    )


class Medication(_Doc):
    missed_severity: Severity = Severity.HIGH
    late_count: Annotated[int, Field(ge=1, le=100)] = 3
    late_days: Annotated[float, Field(gt=0, le=90)] = 7
    late_severity: Severity = Severity.MEDIUM
    refill_low_severity: Severity = Severity.MEDIUM
    robot_error_severity: Severity = Severity.HIGH
    tamper_severity: Severity = Severity.HIGH
    attention_severity: Severity = Severity.HIGH


#: rule -> severity -> metric -> limit; e.g. {"spo2_low": {"high": {"spo2": 92}}}.
Ranges = dict[RangeRuleName, dict[Severity, dict[Metric, Limit]]]


RuleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class Thresholds(_Doc):
    """One complete threshold document (what `threshold_sets.rules` holds)."""

    ranges: Ranges = {}
    trends: dict[RuleName, WeightGain] = {}
    #: The NEWS2 SpO2 scale of the resident (2: at risk of hypercapnic respiratory
    #: failure); changing it through `changed_document` takes that scale's spo2_low tiers.
    spo2_scale: Literal[1, 2] = 1
    #: Device-reported clinical flags; documents stored before they existed get these.
    flags: dict[RuleName, DeviceFlag] = Field(default_factory=_default_flags)
    missing_data: MissingData = MissingData()
    technical: Technical = Technical()
    medication: Medication = Medication()

    @model_validator(mode="after")
    def _glucose_mg_dl_with_glucose(self) -> Thresholds:
        for rule, tiers in self.ranges.items():
            for severity, limits in tiers.items():
                if "glucose_mg_dl" in limits and "glucose" not in limits:
                    raise ValueError(
                        f"ranges.{rule}.{severity}: glucose_mg_dl needs glucose (mmol/L) too"
                    )
        return self


@dataclass(frozen=True)
class Effective:
    """The thresholds in force for a resident at some instant, and where they come from."""

    thresholds: Thresholds
    version: int
    programme: str
    #: The override row; None for the programme's built-in profile.
    set_id: UUID | None = None
    applies_from: datetime | None = None
    created_by: str = "hemhub (programme profile)"
    created_at: datetime | None = None
    note: str | None = None

    @property
    def source(self) -> Literal["programme", "patient"]:
        return "programme" if self.set_id is None else "patient"


@functools.cache  # judged for every reading: validate each programme's profile once
def programme_default(programme: str) -> Effective:
    doc = Thresholds.model_validate(programmes.profile(programme))
    return Effective(thresholds=doc, version=programmes.PROFILE_VERSION, programme=programme)


#: The overrides of some residents (columns in the order `Effective` / `_from_row` read).
SETS_SQL = """
SELECT patient_id, id, version, programme, rules, created_by, created_at, applies_from, note
FROM threshold_sets WHERE patient_id = ANY(%(patients)b)
ORDER BY patient_id, applies_from, version
"""
PROGRAMMES_SQL = "SELECT id, programme, tenant_id FROM patients WHERE id = ANY(%(patients)b)"
INSERT_SQL = """
INSERT INTO threshold_sets
    (tenant_id, patient_id, version, programme, rules, created_by, applies_from, note)
VALUES (%(tenant)s, %(patient)s, %(version)s, %(programme)s, %(rules)s, %(created_by)s,
        %(applies_from)s, %(note)s)
RETURNING patient_id, id, version, programme, rules, created_by, created_at, applies_from, note
"""


def _from_row(row: Iterable[Any]) -> tuple[UUID, Effective]:
    patient_id, set_id, version, programme, rules, created_by, created_at, applies_from, note = row
    return UUID(str(patient_id)), Effective(
        thresholds=Thresholds.model_validate(rules),
        version=version,
        programme=programme,
        set_id=UUID(str(set_id)),
        applies_from=applies_from,
        created_by=created_by,
        created_at=created_at,
        note=note,
    )


def _uuid(value: Any) -> UUID:
    """psycopg returns uuid columns as UUID already: convert only what is not."""
    return value if isinstance(value, UUID) else UUID(str(value))


@dataclass
class ThresholdBook:
    """The programmes and overrides of a group of residents, resolved per instant."""

    programme_of: dict[UUID, str]
    #: patient -> overrides sorted by applies_from
    overrides: dict[UUID, list[Effective]] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls, programme_rows: Iterable[Iterable[Any]], set_rows: Iterable[Iterable[Any]]
    ) -> ThresholdBook:
        book = cls({_uuid(pid): prog for pid, prog, *_ in programme_rows})
        for row in set_rows:
            patient_id, eff = _from_row(row)
            book.overrides.setdefault(patient_id, []).append(eff)
        return book

    def at(self, patient_id: UUID, when: datetime) -> Effective:
        sets = self.overrides.get(patient_id, [])
        applicable = [s for s in sets if s.applies_from is not None and s.applies_from <= when]
        if applicable:
            return max(applicable, key=lambda s: s.version)
        return programme_default(self.programme_of.get(patient_id, ""))

    def next_version(self, patient_id: UUID) -> int:
        versions = [s.version for s in self.overrides.get(patient_id, [])]
        return max([programmes.PROFILE_VERSION, *versions]) + 1


def load(conn: Conn, patient_ids: Iterable[UUID]) -> ThresholdBook:
    params = {"patients": list(set(patient_ids))}
    return ThresholdBook.from_rows(
        conn.execute(PROGRAMMES_SQL, params).fetchall(),
        conn.execute(SETS_SQL, params).fetchall(),
    )


class ThresholdError(ValueError):
    """A threshold change that is not valid (unknown patient, invalid document)."""


def changed_document(current: Thresholds, patch: Mapping[str, Any]) -> Thresholds:
    """The current document with a JSON merge patch applied (raises pydantic errors).

    A patch that changes `spo2_scale` and says nothing of `ranges.spo2_low` also takes
    the new scale's default spo2_low tiers: choosing the scale chooses its limits."""
    merged = programmes.merge_patch(current.model_dump(mode="json"), dict(patch))
    scale = merged.get("spo2_scale")
    ranges_patch = patch.get("ranges")
    gives_spo2 = isinstance(ranges_patch, Mapping) and "spo2_low" in ranges_patch
    if scale in (1, 2) and scale != current.spo2_scale and not gives_spo2:
        merged["ranges"] = {**merged.get("ranges", {}), "spo2_low": programmes.spo2_tiers(scale)}
    return Thresholds.model_validate(merged)


def insert_params(
    book: ThresholdBook,
    patient_id: UUID,
    tenant_id: str,
    doc: Thresholds,
    created_by: str,
    applies_from: datetime,
    note: str | None,
) -> dict[str, Any]:
    """The parameters of INSERT_SQL for a new version of a resident's thresholds."""
    return {
        "tenant": tenant_id,
        "patient": patient_id,
        "version": book.next_version(patient_id),
        "programme": book.programme_of[patient_id],
        "rules": Jsonb(doc.model_dump(mode="json")),
        "created_by": created_by,
        "applies_from": applies_from,
        "note": note,
    }


LOCK_PATIENT_SQL = "SELECT tenant_id FROM patients WHERE id = %s FOR UPDATE"


def create_version(
    conn: Conn,
    patient_id: UUID,
    patch: Mapping[str, Any],
    *,
    created_by: str,
    applies_from: datetime,
    note: str | None = None,
) -> Effective:
    """Store a new version of a resident's thresholds: the version in force at
    `applies_from` with `patch` (a JSON merge patch) applied. Returns the new version."""
    with conn.transaction():
        row = conn.execute(LOCK_PATIENT_SQL, (patient_id,)).fetchone()  # serialises versions
        if row is None:
            raise ThresholdError(f"unknown patient {patient_id}")
        book = load(conn, [patient_id])
        doc = changed_document(book.at(patient_id, applies_from).thresholds, patch)
        params = insert_params(book, patient_id, row[0], doc, created_by, applies_from, note)
        inserted = conn.execute(INSERT_SQL, params).fetchone()
    assert inserted is not None
    return _from_row(inserted)[1]
