"""Fleet health from hub statuses (ingest.health): last values, transitions, a small history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from hemhub.contract import DeviceHealth, DeviceProfile, HubStatus
from ingest import health
from ingest.pipeline import StatusUpdate, store
from tests.factories import unique_hub_id
from tests.test_database_roles import Installation, installation  # noqa: F401 (fixture)

Conn = psycopg.Connection[Any]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CUFF, SCALE = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"


def status(hub: str, *, online: bool = True, **fields: Any) -> HubStatus:
    if not online:
        return HubStatus(hub_id=hub, online=False, software_version=fields.get("sw", "1.0.0"))
    devices = fields.pop("devices", [cuff()])
    return HubStatus(
        hub_id=hub,
        online=True,
        software_version=fields.pop("sw", "1.0.0"),
        outbox_depth=fields.pop("outbox_depth", 0),
        outbox_oldest_age_s=fields.pop("outbox_oldest_age_s", None),
        disk_free_bytes=fields.pop("disk_free_bytes", 10_000_000_000),
        config_version=fields.pop("config_version", 1),
        devices=devices,
        **fields,
    )


def cuff(**fields: Any) -> DeviceHealth:
    values: dict[str, Any] = {"battery_level": 80, "rssi": -60, "firmware": "1.0"} | fields
    return DeviceHealth(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE, **values)


def send(conn: Conn, st: HubStatus, at: datetime) -> None:
    store(conn, [], statuses=[StatusUpdate(st, at)])


def hub_row(conn: Conn, hub: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM hubs WHERE id = %s", (hub,)).fetchone()
    assert row is not None
    return row


def history(conn: Conn, hub: str, address: str | None = None) -> list[list[str]]:
    rows = conn.execute(
        "SELECT reasons FROM fleet_health_history WHERE hub_id = %s"
        " AND address IS NOT DISTINCT FROM %s ORDER BY at, id",
        (hub, address),
    ).fetchall()
    return [r[0] for r in rows]


def test_status_sets_the_hub_health_and_its_devices(conn: Conn) -> None:
    hub = unique_hub_id()
    send(conn, status(hub, outbox_depth=7, outbox_oldest_age_s=42.0, sw="2.1.0"), T0)
    row = hub_row(conn, hub)
    assert row["online"] is True
    assert row["last_seen_at"] == row["state_since"] == T0
    assert (row["software_version"], row["outbox_depth"], row["config_version_applied"]) == (
        "2.1.0",
        7,
        1,
    )
    assert row["outbox_oldest_age_s"] == 42.0
    dev = conn.execute(
        "SELECT address, battery_level, rssi, firmware FROM hub_device_health WHERE hub_id = %s",
        (hub,),
    ).fetchall()
    assert dev == [(CUFF, 80, -60, "1.0")]
    assert history(conn, hub) == [["online"]]
    assert history(conn, hub, CUFF) == [["new"]]


def test_last_will_keeps_the_last_values_and_records_the_transition(conn: Conn) -> None:
    hub = unique_hub_id()
    send(conn, status(hub, outbox_depth=3), T0)
    send(conn, status(hub, outbox_depth=5), T0 + timedelta(minutes=1))
    send(conn, status(hub, online=False), T0 + timedelta(minutes=2))
    row = hub_row(conn, hub)
    assert row["online"] is False
    assert row["state_since"] == T0 + timedelta(minutes=2)
    assert row["last_seen_at"] == T0 + timedelta(minutes=1)
    assert row["outbox_depth"] == 5  # as last reported online
    # The devices stay as last reported: a last will lists none.
    assert conn.execute(
        "SELECT count(*) FROM hub_device_health WHERE hub_id = %s", (hub,)
    ).fetchone() == (1,)
    # The status a minute later changed nothing: no history row for it.
    assert history(conn, hub) == [["online"], ["offline"]]
    send(conn, status(hub), T0 + timedelta(minutes=3))
    assert history(conn, hub) == [["online"], ["offline"], ["online"]]
    assert hub_row(conn, hub)["state_since"] == T0 + timedelta(minutes=3)


def test_an_older_status_never_overwrites_a_newer_one(conn: Conn) -> None:
    hub = unique_hub_id()
    send(conn, status(hub, online=False), T0 + timedelta(minutes=5))
    send(conn, status(hub, outbox_depth=9), T0)
    row = hub_row(conn, hub)
    assert row["online"] is False and row["outbox_depth"] is None
    assert history(conn, hub) == [["offline"]]


def test_history_samples_every_six_hours_and_keeps_device_changes(conn: Conn) -> None:
    hub = unique_hub_id()
    at = T0
    send(conn, status(hub), at)
    for _ in range(6 * 60):  # six hours of statuses, one a minute
        at += timedelta(minutes=1)
        send(conn, status(hub), at)
    assert history(conn, hub) == [["online"], ["sample"]]
    assert history(conn, hub, CUFF) == [["new"], ["sample"]]
    at += timedelta(minutes=1)
    send(conn, status(hub, devices=[cuff(battery_level=15, firmware="1.1")]), at)
    at += timedelta(minutes=1)
    failing = cuff(battery_level=15, firmware="1.1", consecutive_failures=2, last_error="timeout")
    send(conn, status(hub, devices=[failing]), at)
    at += timedelta(minutes=1)
    send(conn, status(hub, sw="2.0.0", config_version=2, devices=[]), at)
    assert history(conn, hub) == [["online"], ["sample"], ["software", "config"]]
    assert history(conn, hub, CUFF) == [
        ["new"],
        ["sample"],
        ["firmware", "battery_low"],
        ["failing", "error"],
        ["removed"],
    ]
    assert conn.execute(
        "SELECT count(*) FROM hub_device_health WHERE hub_id = %s AND listed", (hub,)
    ).fetchone() == (0,)


def test_prune_keeps_changes_longer_than_samples(conn: Conn) -> None:
    hub = unique_hub_id()
    now = datetime.now(UTC)
    for reasons, age in (
        (["sample"], timedelta(days=31)),
        (["sample"], timedelta(days=1)),
        (["offline"], timedelta(days=31)),
        (["offline"], timedelta(days=401)),
    ):
        conn.execute(
            "INSERT INTO fleet_health_history (hub_id, at, reasons, snapshot)"
            " VALUES (%s, %s, %s, '{}')",
            (hub, now - age, reasons),
        )
    health.prune_history(conn)
    left = conn.execute(
        "SELECT reasons, (now() - at) > interval '30 days' FROM fleet_health_history"
        " WHERE hub_id = %s ORDER BY at",
        (hub,),
    ).fetchall()
    assert left == [(["offline"], True), (["sample"], False)]


def test_error_flags_match_the_partial_index(conn: Conn) -> None:
    (definition,) = conn.execute(
        "SELECT pg_get_indexdef('readings_device_errors'::regclass)"
    ).fetchone() or ("",)
    for name in (*health.DEVICE_ERROR_FLAGS, *health.DEVICE_ERROR_EVENTS):
        assert f"'{name}'" in definition


def test_ingest_role_records_and_prunes_without_delete(
    installation: Installation,  # noqa: F811 (the fixture imported above)
) -> None:
    """Under ingest's least-privilege role (no DELETE): a device dropped from a status and
    the retention job both work."""
    hub = unique_hub_id()
    with psycopg.connect(installation.ingest_url, autocommit=True) as conn:
        send(conn, status(hub), T0)
        send(conn, status(hub, devices=[]), T0 + timedelta(minutes=1))
        assert history(conn, hub, CUFF) == [["new"], ["removed"]]
        with conn.transaction():
            health.prune_history(conn)  # the owner's function: allowed; nothing is old yet
        assert history(conn, hub, CUFF) == [["new"], ["removed"]]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM fleet_health_history")


def test_unchanged_devices_are_refreshed_every_few_minutes(conn: Conn) -> None:
    hub = unique_hub_id()
    send(conn, status(hub), T0)
    send(conn, status(hub, devices=[cuff(rssi=-70)]), T0 + timedelta(minutes=1))

    def reported() -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT reported_at, rssi, battery_level FROM hub_device_health WHERE hub_id = %s",
            (hub,),
        ).fetchone()
        assert row is not None
        return tuple(row)

    assert reported() == (T0, -60, 80)  # only the RSSI moved: not rewritten yet
    send(conn, status(hub, devices=[cuff(battery_level=79)]), T0 + timedelta(minutes=2))
    assert reported() == (T0 + timedelta(minutes=2), -60, 79)  # a change: at once
    later = T0 + timedelta(minutes=2) + health.DEVICE_REFRESH
    send(conn, status(hub, devices=[cuff(battery_level=79, rssi=-75)]), later)
    assert reported() == (later, -75, 79)
