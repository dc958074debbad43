"""Data reset endpoints (HMC): ask a hub to wipe a device or itself, see what it said;
confined to the caller's principal, refused to nurses, every request audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from api.auth import Role, issue_token
from hemhub import fleet_cli
from hemhub.contract import CommandKind, CommandOutcome, CommandResult, DeviceIdentity
from hemhub.settings import Settings
from ingest import commands, registry
from ingest.migrations import MigrationReport
from tests.api.helpers import audit_rows, bearer, live_server, make_settings
from tests.test_cli_fleet import fleet

HUB_A, HUB_B = "hub-reset-a", "hub-reset-b"


def _seed(database_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """Principal a: a hub with a meter on its allow-list, and a device on no hub."""
    with psycopg.connect(database_url) as conn:
        for tenant in ("a", "b"):
            registry.ensure_tenant(conn, tenant, tenant.upper())
        registry.register_hub(conn, HUB_A, "a")
        registry.register_hub(conn, HUB_B, "b")
        meter = registry.ensure_device(
            conn, DeviceIdentity(address="C4:71:00:00:00:01", serial="GLM-API-1")
        )
        spare = registry.ensure_device(
            conn, DeviceIdentity(address="C4:71:00:00:00:02", serial="GLM-API-2")
        )
        for device in (meter, spare):
            registry.set_device_owner(conn, device, "a")
        registry.allow_device(conn, HUB_A, meter, datetime.now(UTC) - timedelta(days=3))
    return meter, spare


async def test_a_device_wipe_is_asked_through_its_hub_and_its_result_shown(
    client: httpx.AsyncClient, settings: Settings, database_url: str, migration: MigrationReport
) -> None:
    meter, _ = _seed(database_url)
    hmc = bearer(settings, Role.HMC, "a", "tech-1")

    asked = await client.post(
        f"/api/v1/devices/{meter}/wipe", json={"profile": "glucose"}, headers=hmc
    )
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert (body["hub_id"], body["kind"], body["status"], body["profile"]) == (
        HUB_A,
        "wipe_device",
        "pending",
        "glucose",
    )
    assert body["requested_by"] == "tech-1" and body["address"] == "C4:71:00:00:00:01"
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = CommandResult(
            hub_id=HUB_A,
            command_id=body["command_id"],
            kind=CommandKind.WIPE_DEVICE,
            outcome=CommandOutcome.WIPED,
            reason="4 stored record(s) deleted (RACP delete all)",
            records_before=4,
            bond_removed=True,
            finished_at=datetime.now(UTC),
        )
        assert commands.record_result(conn, result) == "recorded"

    shown = await client.get(f"/api/v1/devices/{meter}/wipe", headers=hmc)
    assert shown.status_code == 200
    assert (shown.json()["status"], shown.json()["result"]["records_before"]) == ("wiped", 4)
    actions = [(r[3], r[4]) for r in audit_rows(database_url)]
    assert ("device.wipe_requested", f"devices/{meter}/wipe") in actions
    assert ("device.wipe_viewed", f"devices/{meter}/wipe") in actions


async def test_a_hub_wipe_is_asked_and_listed(
    client: httpx.AsyncClient, settings: Settings, database_url: str, migration: MigrationReport
) -> None:
    _seed(database_url)
    hmc = bearer(settings, Role.ADMIN, "a", "admin-1")
    asked = await client.post(f"/api/v1/hubs/{HUB_A}/wipe", headers=hmc)
    assert asked.status_code == 202 and asked.json()["kind"] == "wipe_hub"
    listed = await client.get(f"/api/v1/hubs/{HUB_A}/commands", headers=hmc)
    assert [c["command_id"] for c in listed.json()] == [asked.json()["command_id"]]
    with psycopg.connect(database_url) as conn:
        [(payload,)] = conn.execute(
            "SELECT payload FROM hub_outbound WHERE hub_id = %s", (HUB_A,)
        ).fetchall()
    assert payload["kind"] == "wipe_hub" and payload["command_id"] == asked.json()["command_id"]


async def test_wipes_are_confined_to_the_principal_and_refused_to_nurses(
    client: httpx.AsyncClient, settings: Settings, database_url: str, migration: MigrationReport
) -> None:
    meter, spare = _seed(database_url)
    other = bearer(settings, Role.HMC, "b", "tech-b")
    for method, path in [
        ("POST", f"/api/v1/devices/{meter}/wipe"),
        ("GET", f"/api/v1/devices/{meter}/wipe"),
        ("POST", f"/api/v1/hubs/{HUB_A}/wipe"),
        ("GET", f"/api/v1/hubs/{HUB_A}/commands"),
    ]:
        answer = await client.request(
            method, path, headers=other, json={} if method == "POST" else None
        )
        assert answer.status_code == 404, (path, answer.text)
    # b's own hub cannot wipe a's device either.
    answer = await client.post(
        f"/api/v1/devices/{meter}/wipe", json={"hub_id": HUB_B}, headers=other
    )
    assert answer.status_code == 404
    nurse = bearer(settings, Role.NURSE, "a")
    assert (await client.post(f"/api/v1/hubs/{HUB_A}/wipe", headers=nurse)).status_code == 403
    refused = [r for r in audit_rows(database_url) if r[0] == "tech-b"]
    assert len(refused) == 5 and all(r[-1]["outcome"] == "not_found" for r in refused)

    hmc = bearer(settings, Role.HMC, "a", "tech-1")
    never = await client.post(f"/api/v1/devices/{spare}/wipe", json={}, headers=hmc)
    assert never.status_code == 409 and "never on a hub" in never.json()["detail"]
    unknown = await client.post(f"/api/v1/devices/{meter}/wipe", json={}, headers=hmc)
    assert unknown.status_code == 409 and "profile" in unknown.json()["detail"]
    bad = await client.post(
        f"/api/v1/devices/{meter}/wipe", json={"profile": "toaster"}, headers=hmc
    )
    assert bad.status_code == 422
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM hub_commands").fetchone() == (0,)


async def test_the_fleet_cli_asks_and_shows_wipes(
    tmp_path: Path, database_url: str, migration: MigrationReport
) -> None:
    meter, _ = _seed(database_url)
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    token = issue_token(settings, sub="tech-1", role=Role.HMC, tenant="a")
    async with live_server(settings) as server:
        code, out, err = await fleet(
            server.base_url, token, "wipe", "device", str(meter), "--profile", "glucose"
        )
        assert (code, err) == (0, ""), err
        code, out, err = await fleet(server.base_url, token, "wipe", "status", str(meter))
        assert code == 0 and '"status": "pending"' in out.replace('":"', '": "')
        code, _, err = await fleet(server.base_url, token, "wipe", "status", str(uuid.uuid4()))
        assert code == fleet_cli.EXIT_NOT_FOUND and "404" in err
        code, out, _ = await fleet(server.base_url, token, "wipe", "hub", HUB_A)
        assert code == 0 and "wipe_hub" in out
        code, out, _ = await fleet(server.base_url, token, "wipe", "commands", HUB_A)
        assert code == 0 and out.count("command_id") == 2
