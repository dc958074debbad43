"""The nurse's pages under a year of data (`make bench`; alone: `python -m bench.ui_nurse`).

A database of the run's own holds one principal with 20 care units and 5,000 residents
(`--scale` multiplies them), each with a year of readings generated in SQL: blood
pressure twice a day, and the programme's own measurement once a day (weight for heart
failure, SpO2 for COPD, glucose for diabetes), in the readings table the migrations
chose (a TimescaleDB hypertable where the extension is installed, else native
partitions). Alerts: about 20 resolved ones per resident over the year and 5% of the
residents with one open.

Measured through the API (the app in this process, its real pool and database, audit
rows written as for any nurse): GET /api/v1/triage (the open queue's first page: the 50
most urgent alerts) and GET /api/v1/patients/{id}/chart?days=90 for random residents:
p50/p99 of the answers. Next
to each, the plain `EXPLAIN ANALYZE` time (planning + execution, median) of the same
main query with the same parameters, in the same run: what the database alone costs.
Target (issue 15): p99 <= 50 ms for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import psycopg.conninfo

from api import nurse_queries, queries
from api.app import create_app
from api.auth import Role, issue_token
from api.routers.nurse import CHART_TYPES
from hemhub.settings import Settings
from ingest.migrations import migrate

log = logging.getLogger("bench.ui_nurse")

TENANT = "bench-ui"
RESIDENTS = 5_000
DAYS = 365
REQUESTS = 200
TARGET_P99_MS = 50.0

_PROGRAMMES = "ARRAY['hypertension', 'heart_failure', 'copd', 'diabetes']"

SEED_SQL = f"""
INSERT INTO tenants (id, name) VALUES ('{TENANT}', 'Bench municipality');
INSERT INTO care_units (tenant_id, name)
    SELECT '{TENANT}', 'Unit ' || u FROM generate_series(1, 20) u;
CREATE TABLE bench_residents AS
SELECT n, gen_random_uuid() AS id, gen_random_uuid() AS device_id,
       ({_PROGRAMMES})[1 + mod(n, 4)] AS programme
FROM generate_series(1, %(residents)s) n;
INSERT INTO patients (id, tenant_id, display_name, programme, care_unit_id)
SELECT b.id, '{TENANT}', 'Resident ' || b.n, b.programme,
       (SELECT id FROM care_units WHERE name = 'Unit ' || (1 + mod(b.n, 20)))
FROM bench_residents b;
INSERT INTO devices (id, stable_id, address, model, serial)
SELECT b.device_id, 'bench|M|' || b.n, 'C0:00:00:00:00:01', 'M', 'S' || b.n
FROM bench_residents b;
INSERT INTO device_assignments (device_id, patient_id, tenant_id, started_at)
SELECT b.device_id, b.id, '{TENANT}', %(start)s FROM bench_residents b;
"""


def _quantity(name: str, loinc: str, value: str, unit: str) -> str:
    return (
        f"jsonb_build_object('name', '{name}', 'loinc', '{loinc}', 'value', {value},"
        f" 'unit', '{unit}')"
    )


#: One measurement type's readings for residents lo..hi: `every` apart from `start`.
READINGS_SQL = """
INSERT INTO readings (measured_at, idempotency_key, hub_id, device_id, patient_id,
    tenant_id, measurement_type, characteristic, "values", hub_received_at, clock_source,
    clock_offset_s, hub_clock_synced, raw)
SELECT t, md5(b.n || '-{mtype}-' || k), 'bench-hub-' || b.n, b.device_id, b.id,
       '{tenant}', '{mtype}', '{characteristic}', jsonb_build_array({values}), t,
       'set_by_hub', 0, true, '\\x00'
FROM bench_residents b
CROSS JOIN generate_series(0, %(count)s - 1) k
CROSS JOIN LATERAL (SELECT %(start)s + k * %(every)s + mod(b.n, 600) * interval '1 minute'
                    AS t) x
WHERE b.n BETWEEN %(lo)s AND %(hi)s {programme}
"""

MEASUREMENTS: list[tuple[str, str, str, str | None, timedelta]] = [
    (
        "blood_pressure",
        "2A35",
        ", ".join(
            (
                _quantity("systolic", "8480-6", "120 + mod(b.n * 7 + k, 55)", "mm[Hg]"),
                _quantity("diastolic", "8462-4", "75 + mod(b.n + k, 30)", "mm[Hg]"),
                _quantity("pulse_rate", "8867-4", "60 + mod(b.n + 3 * k, 40)", "/min"),
            )
        ),
        None,
        timedelta(hours=12),
    ),
    (
        "body_weight",
        "2A9D",
        _quantity("body_weight", "29463-7", "70 + mod(b.n + k, 40) / 10.0", "kg"),
        "heart_failure",
        timedelta(days=1),
    ),
    (
        "pulse_oximetry",
        "2A5F",
        _quantity("spo2", "2708-6", "88 + mod(b.n + k, 10)", "%%"),  # "%" once bound
        "copd",
        timedelta(days=1),
    ),
    (
        "glucose",
        "2A18",
        _quantity("glucose", "15074-8", "4 + mod(b.n + k, 90) / 10.0", "mmol/L"),
        "diabetes",
        timedelta(days=1),
    ),
]

ALERTS_SQL = f"""
INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, status, reason,
    measured_at, opened_at, last_at, resolved_by, resolved_at)
SELECT '{TENANT}', b.id, 'blood_pressure_high', 2,
       (ARRAY['critical', 'high', 'medium', 'low'])[1 + mod(b.n + j, 4)], 'resolved',
       'bench', t, t, t, 'nurse', t + interval '1 hour'
FROM bench_residents b
CROSS JOIN generate_series(1, 20) j
CROSS JOIN LATERAL (SELECT %(start)s + j * interval '17 days' + b.n * interval '1 minute'
                    AS t) x;
-- 5% of the residents with an open alert, fired by their latest blood pressure.
CREATE TABLE bench_open AS
SELECT DISTINCT ON (b.id) b.id, b.n, r.idempotency_key, r.measured_at
FROM bench_residents b
JOIN readings r ON r.patient_id = b.id AND r.measurement_type = 'blood_pressure'
    AND r.measured_at > now() - interval '2 days'
WHERE mod(b.n, 20) = 0
ORDER BY b.id, r.measured_at DESC;
INSERT INTO reading_keys (idempotency_key, measured_at)
SELECT idempotency_key, measured_at FROM bench_open;
INSERT INTO alerts (tenant_id, patient_id, rule, rule_version, severity, status, reason,
    first_reading_key, last_reading_key, measured_at, opened_at, last_at)
SELECT '{TENANT}', o.id, 'blood_pressure_high', 2,
       (ARRAY['critical', 'high', 'medium', 'low'])[1 + mod(o.n, 4)], 'open', 'bench',
       o.idempotency_key, o.idempotency_key, o.measured_at, o.measured_at, o.measured_at
FROM bench_open o;
"""


def _statements(script: str) -> list[str]:
    """The statements of a script (no semicolons inside them here), without comments."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def seed(conn: psycopg.Connection[Any], residents: int) -> int:
    """The principal, residents, a year of readings and the alerts; the readings count."""
    start = datetime.now(UTC) - timedelta(days=DAYS)
    for statement in _statements(SEED_SQL):
        conn.execute(statement, {"residents": residents, "start": start - timedelta(days=1)})
    chunk = 500
    for lo in range(1, residents + 1, chunk):
        hi = min(residents, lo + chunk - 1)
        for mtype, characteristic, values, programme, every in MEASUREMENTS:
            sql = READINGS_SQL.format(
                mtype=mtype,
                tenant=TENANT,
                characteristic=characteristic,
                values=values,
                programme=f"AND b.programme = '{programme}'" if programme else "",
            )
            count = int(timedelta(days=DAYS) / every)
            conn.execute(sql, {"count": count, "start": start, "every": every, "lo": lo, "hi": hi})
        log.info("ui bench: readings of residents %d..%d", lo, hi)
    for statement in _statements(ALERTS_SQL):
        conn.execute(statement, {"start": start})
    conn.execute("ANALYZE")
    row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def _explain_ms(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> float:
    """Planning + execution time of one plain EXPLAIN ANALYZE of the query."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    plan = row[0][0]
    return float(plan["Planning Time"]) + float(plan["Execution Time"])


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values), q)), 2)


async def _answers(
    settings: Settings, patients: list[uuid.UUID], requests: int
) -> dict[str, list[float]]:
    """Latencies (ms) of the queue and of 90-day charts of random residents."""
    token = issue_token(settings, sub="bench-nurse", role=Role.NURSE, tenant=TENANT)
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(settings)
    out: dict[str, list[float]] = {"queue": [], "chart": []}
    rng = random.Random(15)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(requests + 10):  # the first 10 warm the pool and caches
                t = time.perf_counter()
                r = await client.get("/api/v1/triage", headers=headers)
                queue_ms = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                patient = rng.choice(patients)
                t = time.perf_counter()
                r = await client.get(
                    f"/api/v1/patients/{patient}/chart", params={"days": 90}, headers=headers
                )
                chart_ms = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                if i >= 10:
                    out["queue"].append(queue_ms)
                    out["chart"].append(chart_ms)
    return out


def run(server_url: str, *, residents: int = RESIDENTS, requests: int = REQUESTS) -> dict[str, Any]:
    """The figures (module docstring) on a database of the run's own on `server_url`."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    name = f"hemhub_bench_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    database_url = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    try:
        partitioning = migrate(database_url).partitioning
        t = time.monotonic()
        with psycopg.connect(database_url, autocommit=True) as conn:
            readings = seed(conn, residents)
            patients = [r[0] for r in conn.execute("SELECT id FROM bench_residents")]
        seed_s = time.monotonic() - t
        with tempfile.TemporaryDirectory(prefix="hemhub-bench-ui-") as tmp:
            settings = Settings.model_validate(
                {
                    "database_url": database_url,
                    "data_dir": tmp,
                    "jwt_private_key_file": Path(tmp) / "key.pem",
                    "jwt_jwks_url": None,
                    "jwt_allow_self_made_key": True,
                    "api_runs_hub_link": False,
                    "campaign_tick_s": 0,
                }
            )
            answers = asyncio.run(_answers(settings, patients, requests))
        explain = _explain_runs(database_url, patients)
        out: dict[str, Any] = {
            "partitioning": partitioning,
            "residents": residents,
            "readings": readings,
            "seed_s": round(seed_s, 1),
            "requests": requests,
        }
        for name_, latencies in answers.items():
            out[f"{name_}_p50_ms"] = _ms(latencies, 50)
            out[f"{name_}_p99_ms"] = _ms(latencies, 99)
            out[f"{name_}_explain_analyze_ms"] = round(statistics.median(explain[name_]), 2)
            out[f"{name_}_target_met"] = out[f"{name_}_p99_ms"] <= TARGET_P99_MS
        return out
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _explain_runs(database_url: str, patients: list[uuid.UUID]) -> dict[str, list[float]]:
    """EXPLAIN ANALYZE of the endpoints' main queries, 20 times each."""
    scope = queries.scope_params(TENANT, None)
    queue_sql = nurse_queries.TRIAGE_SQL.format(
        scope=queries.visible(
            at="a.measured_at", care_units=False, data_tenant="a.tenant_id",
            data_patient="a.patient_id",
        ),
        filters=nurse_queries.ACTIVE_FILTER,
    )  # fmt: skip
    chart_sql = nurse_queries.CHART_READINGS_SQL.format(
        scope=queries.visible(
            at="r.measured_at", care_units=False, data_tenant="r.tenant_id",
            data_patient="r.patient_id",
        )
    )  # fmt: skip
    rng = random.Random(16)
    out: dict[str, list[float]] = {"queue": [], "chart": []}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(20):
            out["queue"].append(_explain_ms(conn, queue_sql, {**scope, "limit": 50}))
            now = datetime.now(UTC)
            out["chart"].append(
                _explain_ms(
                    conn,
                    chart_sql,
                    {
                        **scope,
                        "patient": rng.choice(patients),
                        "types": CHART_TYPES,
                        "since": now - timedelta(days=90),
                        "until": now,
                    },
                )
            )
    return out


def table(results: dict[str, Any]) -> str:
    if "skipped" in results:
        return f"nurse's pages: skipped ({results['skipped']})"
    lines = [
        f"nurse's pages: {results['residents']:,} residents, {results['readings']:,} readings"
        f" ({results['partitioning']}), seeded in {results['seed_s']} s",
        f"{'answer':<32}{'p50 ms':>10}{'p99 ms':>10}{'EXPLAIN ANALYZE ms':>20}{'p99<=50':>9}",
    ]
    for key, label in (("queue", "open queue (50 rows)"), ("chart", "90-day chart")):
        lines.append(
            f"{label:<32}{results[f'{key}_p50_ms']:>10}{results[f'{key}_p99_ms']:>10}"
            f"{results[f'{key}_explain_analyze_ms']:>20}"
            f"{'yes' if results[f'{key}_target_met'] else 'NO':>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_nurse", description=__doc__)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--residents", type=int, default=RESIDENTS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("ingest").setLevel(logging.WARNING)
    results = run(args.server, residents=args.residents, requests=args.requests)
    print(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
