"""`hemhub fleet products|devices|hubs`: a technician's session through the real API."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from api.auth import Role, issue_token
from hemhub import fleet_cli
from ingest import registry
from ingest.migrations import migrate
from tests.api.helpers import live_server, make_settings
from tests.test_cli_fleet import fleet


async def test_a_technician_session(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, "a", "Kommun A")
        resident = registry.create_patient(conn, "a", "Alice")
        conn.commit()
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    token = issue_token(settings, sub="tech-1", role=Role.HMC, tenant="a")
    nurse = issue_token(settings, sub="nurse-1", role=Role.NURSE, tenant="a")
    async with live_server(settings) as server:

        async def run(*argv: str, who: str = token) -> tuple[int, object, str]:
            code, out, err = await fleet(server.base_url, who, *argv)
            return code, json.loads(out) if out else None, err

        code, product, err = await run(
            "products", "add", "--kind", "glucose", "--manufacturer", "Roche",
            "--model", "Guide", "--quirks", '{"bond": true}',
        )  # fmt: skip
        assert code == 0, err
        assert isinstance(product, dict) and product["quirks"] == {"bond": True}
        code, device, err = await run(
            "devices", "register", "--product-id", product["id"], "--serial", "G-1",
            "--address", "C0:FF:EE:00:00:07", "--hardware-revision", "B",
        )  # fmt: skip
        assert code == 0, err
        assert isinstance(device, dict) and device["state"] == "in_stock"
        assert (await run("hubs", "register", "--id", "cli-hub-1"))[0] == 0
        code, creds, _ = await run("hubs", "credentials", "cli-hub-1")
        assert code == 0 and isinstance(creds, dict) and len(creds["password"]) >= 43
        code, _, err = await run("hubs", "credentials", "cli-hub-1")
        assert code == fleet_cli.EXIT_CONFLICT and "409" in err and "revoke" in err
        code, got, err = await run(
            "devices", "assign", device["id"], "--patient-id", str(resident),
            "--hub-id", "cli-hub-1", "--reason", "new resident",
        )  # fmt: skip
        assert code == 0, err
        assert isinstance(got, dict) and got["state"] == "assigned"
        code, _, err = await run("devices", "state", device["id"], "--to", "in_stock")
        assert code == fleet_cli.EXIT_CONFLICT and "assigned cannot become in_stock" in err
        code, _, err = await run("devices", "state", device["id"], "--to", "limbo")
        assert code == fleet_cli.EXIT_USAGE
        code, _, err = await run("devices", "show", "not-a-uuid")
        assert code == fleet_cli.EXIT_INVALID
        code, _, err = await run("hubs", "show", "no-such-hub")
        assert code == fleet_cli.EXIT_NOT_FOUND
        code, hub, _ = await run("hubs", "show", "cli-hub-1")
        assert isinstance(hub, dict) and hub["config_version_wanted"] == 1
        code, _, err = await run("hubs", "register", "--id", "cli-hub-2", who=nurse)
        assert code == fleet_cli.EXIT_REFUSED and "403" in err
        code, history, _ = await run("devices", "history", device["id"])
        assert isinstance(history, list)
        assert [h["to_state"] for h in history] == ["in_stock", "assigned"]
        assert history[1]["reason"] == "new resident"
