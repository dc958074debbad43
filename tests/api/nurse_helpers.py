"""Seed rows for the nurse's pages: a resident with a month of measurements of every
kind, a threshold override, a schedule, medication-robot events and alerts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from tests.api.helpers import key

NOW = datetime.now(UTC).replace(microsecond=0)

CHARACTERISTIC = {
    "blood_pressure": "2A35",
    "body_weight": "2A9D",
    "pulse_oximetry": "2A5F",
    "glucose": "2A18",
    "medication_event": "0000fe00-0000-1000-8000-00805f9b34fb",
}


def bp(systolic: float, diastolic: float, pulse: float | None = 70) -> list[dict[str, object]]:
    return [
        {"name": "systolic", "loinc": "8480-6", "value": systolic, "unit": "mm[Hg]"},
        {"name": "diastolic", "loinc": "8462-4", "value": diastolic, "unit": "mm[Hg]"},
        {"name": "pulse_rate", "loinc": "8867-4", "value": pulse, "unit": "/min"},
    ]


def weight(kg: float) -> list[dict[str, object]]:
    return [{"name": "body_weight", "loinc": "29463-7", "value": kg, "unit": "kg"}]


def add_reading(
    conn: psycopg.Connection,
    *,
    label: str,
    device: uuid.UUID,
    patient: uuid.UUID,
    tenant: str,
    mtype: str,
    at: datetime,
    values: list[dict[str, object]],
    status: list[str] | None = None,
    event: dict[str, object] | None = None,
    synced: bool = True,
) -> str:
    k = key(label)
    conn.execute("INSERT INTO reading_keys (idempotency_key, measured_at) VALUES (%s, %s)", (k, at))
    conn.execute(
        """
        INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
            tenant_id, measurement_type, characteristic, "values", status, event, device_time,
            hub_received_at, clock_source, clock_offset_s, hub_clock_synced, raw)
        VALUES (%s, %s, 'hub-n', %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s,
            'offset_measured', 2.0, %s, '\\x00')
        """,
        (
            at,
            k,
            device,
            patient,
            tenant,
            mtype,
            CHARACTERISTIC[mtype],
            Jsonb(values),
            status or [],
            Jsonb(event) if event is not None else None,
            at + timedelta(seconds=5),
            synced,
        ),
    )
    return k


def add_alert(
    conn: psycopg.Connection,
    *,
    tenant: str,
    patient: uuid.UUID,
    rule: str,
    severity: str,
    reading: str | None,
    measured_at: datetime,
    opened_at: datetime,
    rule_version: int = 2,
    threshold_set: uuid.UUID | None = None,
) -> uuid.UUID:
    row = conn.execute(
        """
        INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, reason,
            first_reading_key, last_reading_key, measured_at, opened_at, last_at,
            threshold_set_id, last_reason, last_measured_at)
        VALUES (%s, %s, %s, %s, %s, 'the engine''s sentence', %s, %s, %s, %s, %s, %s,
            'the engine''s sentence', %s)
        RETURNING id
        """,
        (
            tenant,
            patient,
            rule,
            rule_version,
            severity,
            reading,
            reading,
            measured_at,
            opened_at,
            opened_at,
            threshold_set,
            measured_at,
        ),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


@dataclass
class Ward:
    """Tenant a: Greta (hypertension, in care unit Norr, a month of data) and Harald
    (heart failure, no unit); tenant b: Ivar. Alerts of each severity."""

    unit: uuid.UUID
    greta: uuid.UUID
    harald: uuid.UUID
    ivar: uuid.UUID
    critical: uuid.UUID  # Greta, BP 225/125, opened 1 h ago
    high_old: uuid.UUID  # Harald, weight, opened 3 days ago
    high_new: uuid.UUID  # Greta, pulse, opened 2 h ago
    medium: uuid.UUID  # Harald, missing blood pressure, opened 5 days ago
    ivar_alert: uuid.UUID
    override: uuid.UUID  # Greta's threshold version 3, from 10 days ago
    critical_reading: str


def seed_ward(database_url: str) -> Ward:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO tenants (id, name) VALUES ('a', 'Kommun A'), ('b', 'Region B')"
            " ON CONFLICT DO NOTHING"
        )
        unit_row = conn.execute(
            "INSERT INTO care_units (tenant_id, name) VALUES ('a', 'Norr') RETURNING id"
        ).fetchone()
        assert unit_row is not None
        unit = uuid.UUID(str(unit_row[0]))

        def patient(
            tenant: str, name: str, programme: str, care_unit: uuid.UUID | None
        ) -> uuid.UUID:
            row = conn.execute(
                "INSERT INTO patients (tenant_id, display_name, programme, care_unit_id)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (tenant, name, programme, care_unit),
            ).fetchone()
            assert row is not None
            return uuid.UUID(str(row[0]))

        def device(serial: str, pat: uuid.UUID, tenant: str) -> uuid.UUID:
            row = conn.execute(
                "INSERT INTO devices (stable_id, address, model, serial)"
                " VALUES (%s, 'C0:11:22:33:44:66', 'M', %s) RETURNING id",
                (f"x|M|{serial}", serial),
            ).fetchone()
            assert row is not None
            dev = uuid.UUID(str(row[0]))
            conn.execute(
                "INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)"
                " VALUES (%s, %s, %s, %s)",
                (dev, pat, tenant, NOW - timedelta(days=120)),
            )
            return dev

        greta = patient("a", "Greta Lind", "hypertension", unit)
        harald = patient("a", "Harald Ek", "heart_failure", None)
        ivar = patient("b", "Ivar Holm", "hypertension", None)
        dev = device("G", greta, "a")
        dev_h = device("H", harald, "a")
        dev_i = device("I", ivar, "b")
        for day in range(30, 0, -1):
            at = NOW - timedelta(days=day)
            add_reading(
                conn, label=f"g-bp-{day}", device=dev, patient=greta, tenant="a",
                mtype="blood_pressure", at=at, values=bp(140 + day % 5, 85),
                synced=day % 2 == 0,
            )  # fmt: skip
        for day in range(10, 0, -1):
            add_reading(
                conn, label=f"g-w-{day}", device=dev, patient=greta, tenant="a",
                mtype="body_weight", at=NOW - timedelta(days=day),
                values=weight(70 + (10 - day) * 0.5),
            )  # fmt: skip
        for day in range(6, -1, -1):
            base = (NOW - timedelta(days=day)).replace(hour=8, minute=0, second=0)
            if base > NOW:
                base -= timedelta(days=1)
            add_reading(
                conn, label=f"g-due-{day}", device=dev, patient=greta, tenant="a",
                mtype="medication_event", at=base, values=[],
                event={"kind": "dose_due", "dose_id": day, "slot": 1},
            )  # fmt: skip
            outcome = "dose_missed" if day == 2 else "dose_taken"
            add_reading(
                conn, label=f"g-dose-{day}", device=dev, patient=greta, tenant="a",
                mtype="medication_event", at=base + timedelta(minutes=20), values=[],
                event={"kind": outcome, "dose_id": day, "slot": 1},
            )  # fmt: skip
        critical_reading = add_reading(
            conn, label="g-bp-critical", device=dev, patient=greta, tenant="a",
            mtype="blood_pressure", at=NOW - timedelta(hours=1, minutes=5), values=bp(225, 125, 72),
        )  # fmt: skip
        pulse_reading = add_reading(
            conn, label="g-bp-pulse", device=dev, patient=greta, tenant="a",
            mtype="blood_pressure", at=NOW - timedelta(hours=2, minutes=5), values=bp(150, 90, 135),
        )  # fmt: skip
        ivar_reading = add_reading(
            conn, label="i-bp", device=dev_i, patient=ivar, tenant="b",
            mtype="blood_pressure", at=NOW - timedelta(hours=1), values=bp(230, 125),
        )  # fmt: skip
        add_reading(
            conn, label="h-w", device=dev_h, patient=harald, tenant="a",
            mtype="body_weight", at=NOW - timedelta(days=3), values=weight(82),
        )  # fmt: skip
        override_row = conn.execute(
            "INSERT INTO threshold_sets (tenant_id, patient_id, version, programme, rules,"
            " created_by, applies_from, note) VALUES ('a', %s, 3, 'hypertension', %s,"
            " 'dr-berg', %s, 'lower after medication change') RETURNING id",
            (
                greta,
                Jsonb(
                    {
                        "ranges": {
                            "blood_pressure_high": {
                                "critical": {"systolic": 220, "diastolic": 120},
                                "high": {"systolic": 170, "diastolic": 105},
                            },
                            "pulse_high": {"high": {"pulse": 131}},
                        }
                    }
                ),
                NOW - timedelta(days=10),
            ),
        ).fetchone()
        assert override_row is not None
        override = uuid.UUID(str(override_row[0]))
        conn.execute(
            "INSERT INTO monitoring_schedules (patient_id, measurement_type, every, starts_at,"
            " created_by) VALUES (%s, 'blood_pressure', '1 day', %s, 'hmc'),"
            " (%s, 'blood_pressure', '1 day', %s, 'hmc')",
            (greta, NOW - timedelta(days=60), harald, NOW - timedelta(days=60)),
        )
        critical = add_alert(
            conn, tenant="a", patient=greta, rule="blood_pressure_high", severity="critical",
            reading=critical_reading, measured_at=NOW - timedelta(hours=1, minutes=5),
            opened_at=NOW - timedelta(hours=1), rule_version=3, threshold_set=override,
        )  # fmt: skip
        high_new = add_alert(
            conn, tenant="a", patient=greta, rule="pulse_high", severity="high",
            reading=pulse_reading, measured_at=NOW - timedelta(hours=2, minutes=5),
            opened_at=NOW - timedelta(hours=2), rule_version=3, threshold_set=override,
        )  # fmt: skip
        high_old = add_alert(
            conn, tenant="a", patient=harald, rule="weight_gain", severity="high",
            reading=None, measured_at=NOW - timedelta(days=3), opened_at=NOW - timedelta(days=3),
        )  # fmt: skip
        medium = add_alert(
            conn, tenant="a", patient=harald, rule="missing_blood_pressure", severity="medium",
            reading=None, measured_at=NOW - timedelta(days=5), opened_at=NOW - timedelta(days=5),
        )  # fmt: skip
        ivar_alert = add_alert(
            conn, tenant="b", patient=ivar, rule="blood_pressure_high", severity="critical",
            reading=ivar_reading, measured_at=NOW - timedelta(hours=1),
            opened_at=NOW - timedelta(hours=1),
        )  # fmt: skip
    return Ward(
        unit=unit,
        greta=greta,
        harald=harald,
        ivar=ivar,
        critical=critical,
        high_old=high_old,
        high_new=high_new,
        medium=medium,
        ivar_alert=ivar_alert,
        override=override,
        critical_reading=critical_reading,
    )
