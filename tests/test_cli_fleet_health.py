"""`hemhub fleet health ...` and `hemhub fleet figures ...` against a real API."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from api.auth import Role, issue_token
from hemhub import fleet_cli
from hemhub.contract import HubStatus
from ingest import registry
from ingest.migrations import migrate
from ingest.pipeline import StatusUpdate, store
from tests.api.helpers import live_server, make_settings
from tests.factories import unique_hub_id
from tests.test_cli_fleet import fleet


async def test_health_and_figures_commands(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    up, down = unique_hub_id("up"), unique_hub_id("down")
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.ensure_tenant(conn, "a", "A")
        for hub in (up, down):
            registry.register_hub(conn, hub, "a")
        now = datetime.now(UTC)
        store(conn, [], statuses=[StatusUpdate(HubStatus(hub_id=up, online=True), now)])
        store(conn, [], statuses=[StatusUpdate(HubStatus(hub_id=down, online=False), now)])
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    token = issue_token(settings, sub="tech-1", role=Role.HMC, tenant="a")
    async with live_server(settings) as server:
        code, out, err = await fleet(server.base_url, token, "health", "hubs", "--state", "offline")
        assert (code, err) == (0, "")
        assert [h["hub_id"] for h in json.loads(out)["hubs"]] == [down]

        code, out, _ = await fleet(server.base_url, token, "health", "hub", up)
        assert code == 0 and json.loads(out)["hub"]["state"] == "online"
        code, _, err = await fleet(server.base_url, token, "health", "hub", "no-such-hub")
        assert code == fleet_cli.EXIT_NOT_FOUND and "hub not found" in err
        code, _, err = await fleet(
            server.base_url, token, "health", "hubs", "--offline-for-hours", "-3"
        )
        assert code == fleet_cli.EXIT_INVALID

        code, out, err = await fleet(
            server.base_url, token, "figures", "faults", "--format", "csv",
            "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z",
        )  # fmt: skip
        assert (code, err) == (0, "")
        assert next(csv.reader(io.StringIO(out)))[:3] == ["manufacturer", "model", "devices"]
        code, out, _ = await fleet(server.base_url, token, "figures", "readings-per-week")
        assert code == 0 and json.loads(out)["rows"] == []
