"""Follow-up figures: JSON and CSV that parse and count right, confined and audited."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg.types.json import Jsonb

from api.auth import Role
from hemhub.settings import Settings
from tests.api.helpers import Seed, audit_rows, bearer, bp_values, insert_reading

#: A fixed period of two whole ISO weeks (Mondays): 2026-11-16 .. 2026-11-30.
START = datetime(2026, 11, 16, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)
PERIOD = f"from={START.isoformat()}&to={END.isoformat()}".replace("+", "%2B")


def _readings(database_url: str, seed: Seed) -> None:
    """Alice (a): 3 readings in week 1, 1 in week 2, of which 2 flagged as device faults;
    one outside the period. Bert (b): 1 in week 1 (another principal)."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("UPDATE devices SET owner_tenant_id = 'a' WHERE serial = 'SN-A'")
        conn.execute("UPDATE devices SET owner_tenant_id = 'b' WHERE serial = 'SN-B'")
        (dev_a,) = conn.execute("SELECT id FROM devices WHERE serial = 'SN-A'").fetchone() or ()
        (dev_b,) = conn.execute("SELECT id FROM devices WHERE serial = 'SN-B'").fetchone() or ()
        for i, (day, status) in enumerate(
            (
                (1, []),
                (2, ["sensor_malfunction"]),
                (3, ["irregular_pulse"]),  # clinical, not a fault
                (8, ["time_fault", "body_movement"]),
                (20, ["sensor_malfunction"]),  # outside the period
            )
        ):
            insert_reading(
                conn,
                label=f"fig-a-{i}",
                device=dev_a,
                patient=seed.alice,
                tenant="a",
                measured_at=START + timedelta(days=day, hours=9),
                values=bp_values(130, 85),
                status=status,
            )
        insert_reading(
            conn,
            label="fig-b",
            device=dev_b,
            patient=seed.bert,
            tenant="b",
            measured_at=START + timedelta(days=1),
            values=bp_values(130, 85),
            status=["sensor_malfunction"],
        )


async def test_readings_per_week_json_and_csv(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    _readings(settings.database_url or "", seed)
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    r = await client.get(f"/api/v1/fleet/figures/readings-per-week?{PERIOD}", headers=h)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["columns"] == ["patient_id", "care_unit_id", "week", "readings"]
    # Only residents with a device assigned in the period: Alice, not Arne; zero weeks too.
    rows = [(x["patient_id"], x["week"], x["readings"]) for x in got["rows"]]
    assert rows == [(str(seed.alice), "2026-11-16", 3), (str(seed.alice), "2026-11-23", 1)]
    r = await client.get(
        f"/api/v1/fleet/figures/readings-per-week?{PERIOD}",
        headers={**h, "Accept": "text/csv"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["patient_id"], x["week"], int(x["readings"])) for x in parsed] == rows
    # One audit row per resident shown.
    audited = [x for x in audit_rows(settings.database_url or "") if x[3] == "fleet.figures"]
    assert [(x[0], x[5]) for x in audited] == [("hmc-1", seed.alice), ("hmc-1", seed.alice)]


async def test_faults_per_model(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    _readings(settings.database_url or "", seed)
    h = bearer(settings, Role.ADMIN, "a", "admin-a")
    r = await client.get(f"/api/v1/fleet/figures/faults?{PERIOD}&format=csv", headers=h)
    assert r.status_code == 200, r.text
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert row["manufacturer"] == "Omron" and row["model"] == "BP7150"
    assert (row["devices"], row["error_readings"], row["devices_with_error_readings"]) == (
        "1",
        "2",
        "1",
    )
    # Principal b sees its own device only.
    b = bearer(settings, Role.HMC, "b", "hmc-b")
    got = (await client.get(f"/api/v1/fleet/figures/faults?{PERIOD}", headers=b)).json()
    assert [(x["devices"], x["error_readings"]) for x in got["rows"]] == [(1, 1)]


async def test_bad_requests(client: httpx.AsyncClient, settings: Settings, seed: Seed) -> None:
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    assert (await client.get("/api/v1/fleet/figures/nothing", headers=h)).status_code == 404
    for query in (
        f"from={END.isoformat()}&to={START.isoformat()}".replace("+", "%2B"),
        "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=yesterday",
        "format=xml",
    ):
        r = await client.get(f"/api/v1/fleet/figures/faults?{query}", headers=h)
        assert r.status_code == 422, (query, r.text)
    nurse = bearer(settings, Role.NURSE, "a")
    assert (await client.get("/api/v1/fleet/figures/faults", headers=nurse)).status_code == 403


def _device_life(database_url: str) -> None:
    """Principal a: one product with five devices through their lives (times relative to
    START); principal b: one device of its own (never counted for a)."""
    day = timedelta(days=1)
    lives = {
        "d1": [("in_stock", -10), ("assigned", 1)],
        "d2": [("in_stock", -10), ("retired", 3, "lost")],
        "d3": [("in_stock", -10), ("quarantine", 2), ("in_stock", 5)],
        "d4": [("in_stock", -10)],
        "d5": [("in_stock", -10), ("retired", -5, "broken")],
    }
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        for tenant in ("a", "b"):
            (product,) = (
                conn.execute(
                    "INSERT INTO products (tenant_id, kind, manufacturer, model)"
                    " VALUES (%s, 'blood_pressure', 'Omron', 'M7') RETURNING id",
                    (tenant,),
                ).fetchone()
                or ()
            )
            for name, changes in lives.items() if tenant == "a" else [("b1", [("in_stock", -1)])]:
                state = changes[-1][0]
                (device,) = (
                    conn.execute(
                        "INSERT INTO devices (stable_id, address, product_id, owner_tenant_id,"
                        " state) VALUES (%s, 'C0:00:00:00:00:01', %s, %s, %s) RETURNING id",
                        (f"Omron|M7|{tenant}-{name}", product, tenant, state),
                    ).fetchone()
                    or ()
                )
                previous = None
                for to_state, offset, *retired in changes:
                    conn.execute(
                        "INSERT INTO device_state_changes (device_id, from_state, to_state, at,"
                        " by_subject, by_tenant, reason, detail) VALUES (%s, %s, %s, %s, 't',"
                        " %s, NULL, %s)",
                        (device, previous, to_state, START + offset * day, tenant,
                         Jsonb({"retired_as": retired[0]}) if retired else None),
                    )  # fmt: skip
                    previous = to_state


async def test_devices_per_product_and_state(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    _device_life(settings.database_url or "")
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    r = await client.get("/api/v1/fleet/figures/devices?format=csv", headers=h)
    assert r.status_code == 200, r.text
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    counts = {
        k: int(v)
        for k, v in row.items()
        if k not in ("product_id", "kind", "manufacturer", "model")
    }
    assert counts == {
        "devices": 5,
        "in_use": 1,
        "in_stock": 2,
        "returned": 0,
        "in_quarantine": 0,
        "in_repair": 0,
        "lost": 1,
        "retired_other": 1,
    }
    b = bearer(settings, Role.HMC, "b", "hmc-b")
    got = (await client.get("/api/v1/fleet/figures/devices", headers=b)).json()
    assert [(x["devices"], x["in_stock"]) for x in got["rows"]] == [(1, 1)]


async def test_days_in_each_state(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    _device_life(settings.database_url or "")
    h = bearer(settings, Role.HMC, "a", "hmc-1")
    r = await client.get(f"/api/v1/fleet/figures/days-in-state?{PERIOD}", headers=h)
    assert r.status_code == 200, r.text
    got = {
        x["state"]: (x["devices"], x["stays"], float(x["device_days"]),
                     x["mean_days_per_finished_stay"])
        for x in r.json()["rows"]
    }  # fmt: skip
    # In the 14 days: in stock d1 1 day, d2 3, d3 2 + 9, d4 14; d5 retired all along.
    assert got["in_stock"][:3] == (4, 5, 29.0)
    assert got["quarantine"] == (1, 1, 3.0, 3.0)
    assert got["assigned"][:3] == (1, 1, 13.0)
    assert got["retired"][:3] == (2, 2, 25.0)
