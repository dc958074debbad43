"""`hemhub fleet principals|care-units|residents|shares`: real processes against a real
API and PostgreSQL, as a technician and an admin would use them; exit codes of refusals."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.auth import Role, issue_token
from hemhub import fleet_cli
from ingest import registry
from ingest.migrations import migrate
from tests.api.helpers import audit_rows, live_server, make_settings
from tests.test_cli_fleet import fleet


async def test_people_commands(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    settings = make_settings(
        tmp_path, database_url, api_runs_hub_link=False, operator_principal="ops"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.ensure_tenant(conn, "ops", "Platform operator")

    def token(role: Role, tenant: str) -> str:
        return issue_token(settings, sub=f"{role.value}@{tenant}", role=role, tenant=tenant)

    operator = token(Role.ADMIN, "ops")
    hmc, admin = token(Role.HMC, "kommun-a"), token(Role.ADMIN, "kommun-a")
    async with live_server(settings) as server:
        url = server.base_url

        async def ok(tok: str, *argv: str) -> Any:
            code, out, err = await fleet(url, tok, *argv)
            assert (code, err) == (0, ""), (argv, code, err)
            return json.loads(out)

        for pid, name in (("kommun-a", "Kommun A"), ("region-b", "Region B")):
            created = await ok(operator, "principals", "create", "--id", pid, "--name", name)
            assert created["id"] == pid
        code, _, err = await fleet(
            url, operator, "principals", "create", "--id", "kommun-a", "--name", "x"
        )
        assert code == fleet_cli.EXIT_CONFLICT and "409" in err
        code, _, err = await fleet(url, admin, "principals", "create", "--id", "x", "--name", "X")
        assert code == fleet_cli.EXIT_REFUSED and "operator" in err

        unit = await ok(hmc, "care-units", "create", "--name", "Norr")
        unit_id = unit["id"]
        code, _, _ = await fleet(url, hmc, "care-units", "create", "--name", "Norr")
        assert code == fleet_cli.EXIT_CONFLICT
        renamed = await ok(hmc, "care-units", "rename", unit_id, "--name", "Norra")
        assert renamed["name"] == "Norra"

        resident = await ok(
            hmc, "residents", "create", "--display-name", "Dora Ek", "--programme", "copd"
        )
        rid = resident["id"]
        code, _, err = await fleet(
            url, hmc, "residents", "create", "--display-name", "X", "--programme", "astrology"
        )
        assert code == fleet_cli.EXIT_INVALID and "programme" in err
        code, _, _ = await fleet(
            url, token(Role.NURSE, "kommun-a"), "residents", "create", "--display-name", "X"
        )
        assert code == fleet_cli.EXIT_REFUSED
        code, _, err = await fleet(url, hmc, "residents", "show", str(uuid.uuid4()))
        assert code == fleet_cli.EXIT_NOT_FOUND and "patient not found" in err

        placed = await ok(hmc, "residents", "place", rid, "--care-unit-id", unit_id)
        assert placed == {"patient_id": rid, "care_unit_id": unit_id}
        await ok(hmc, "residents", "update", rid, "--display-name", "Dora Ek-Berg")
        scheduled = await ok(hmc, "residents", "schedule", rid, "blood_pressure", "--every", "P1D")
        assert scheduled["schedules"][0]["every"] == "P1D"
        listed = await ok(hmc, "residents", "list")
        assert [(r["display_name"], r["care_unit_id"]) for r in listed] == [
            ("Dora Ek-Berg", unit_id)
        ]

        ends = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        share = await ok(
            admin,
            "shares",
            "grant",
            rid,
            "--grantee",
            "region-b",
            "--purpose",
            "home care",
            "--reason",
            "consent on file",
            "--ends-at",
            ends,
        )
        assert share["in_force"] is True
        code, _, _ = await fleet(
            url,
            hmc,
            "shares",
            "grant",
            rid,
            "--grantee",
            "region-b",
            "--purpose",
            "p",
            "--reason",
            "r",
            "--ends-at",
            ends,
        )
        assert code == fleet_cli.EXIT_REFUSED  # sharing is the admin's decision
        received = await ok(
            token(Role.ADMIN, "region-b"), "shares", "list", "--direction", "received"
        )
        assert [s["patient_id"] for s in received] == [rid]
        revoked = await ok(admin, "shares", "revoke", share["id"], "--reason", "withdrawn")
        assert revoked["revoked_by"] == "admin@kommun-a"

        done = await ok(hmc, "residents", "deactivate", rid, "--reason", "moved away")
        assert done["deactivated_by"] == "hmc@kommun-a"
        code, _, err = await fleet(url, hmc, "residents", "deactivate", rid, "--reason", "again")
        assert code == fleet_cli.EXIT_CONFLICT and "deactivated" in err

    assert {r[3] for r in audit_rows(database_url)} >= {
        "principal.create",
        "care_unit.create",
        "care_unit.rename",
        "resident.create",
        "patient.care_unit",
        "resident.update",
        "resident.schedule",
        "share.grant",
        "share.revoke",
        "resident.deactivate",
    }
