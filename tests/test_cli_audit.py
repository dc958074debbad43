"""`hemhub audit list|export|verify` and `hemhub fleet residents erase`: real processes
against a real API and PostgreSQL, as an auditor, a technician and an operator use them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import psycopg

from api.auth import Role, issue_token
from hemhub import audit_cli, fleet_cli
from ingest import registry
from ingest.migrations import migrate
from tests.api.helpers import live_server, make_settings
from tests.test_cli_fleet import fleet, hemhub_command


async def audit(
    base_url: str | None, token: str | None, *argv: str, env_extra: dict[str, str] | None = None
) -> tuple[int, str, str]:
    return await hemhub_command("audit", base_url, token, *argv, env_extra=env_extra)


async def test_audit_and_erase_commands(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.ensure_tenant(conn, "kommun-a", "Kommun A")
        patient = registry.create_patient(conn, "kommun-a", "Hilda Sjö")

    def token(role: Role, sub: str) -> str:
        return issue_token(settings, sub=sub, role=role, tenant="kommun-a")

    hmc, auditor = token(Role.HMC, "tech-1"), token(Role.AUDITOR, "auditor-1")
    async with live_server(settings) as server:
        url = server.base_url
        code, out, err = await fleet(url, hmc, "residents", "show", str(patient))
        assert (code, err) == (0, ""), err

        code, out, err = await audit(url, auditor, "list", "--patient", str(patient))
        assert (code, err) == (0, "")
        [entry] = json.loads(out)["entries"]
        assert (entry["subject"], entry["action"]) == ("tech-1", "resident.read")
        code, out, _ = await audit(url, auditor, "list", "--subject", "tech-1", "--limit", "1")
        assert code == 0 and json.loads(out)["next_after"] is None
        code, out, err = await audit(url, auditor, "list", "--action", "resident.read", "--from",
                                     "2026-13-01")  # fmt: skip
        assert code == fleet_cli.EXIT_INVALID and "422" in err
        code, _, err = await audit(url, hmc, "list")
        assert code == fleet_cli.EXIT_REFUSED and "403" in err

        code, out, err = await audit(url, auditor, "export", "--patient", str(patient))
        assert (code, err) == (0, "")
        rows = list(csv.DictReader(io.StringIO(out, newline="")))
        assert [r["action"] for r in rows] == ["resident.read", "audit.list", "audit.list"]
        assert rows[0]["patient_display_name"] == "Hilda Sjö"

        # the technician erases the (deactivated) resident
        code, _, err = await fleet(url, hmc, "residents", "erase", str(patient), "--basis",
                                   "request")  # fmt: skip
        assert code == fleet_cli.EXIT_CONFLICT and "deactivate" in err
        code, _, err = await fleet(url, hmc, "residents", "deactivate", str(patient), "--reason",
                                   "moved")  # fmt: skip
        assert code == 0, err
        code, out, err = await fleet(url, hmc, "residents", "erase", str(patient), "--basis",
                                     "request")  # fmt: skip
        assert (code, err) == (0, ""), err
        pseudonym = json.loads(out)["pseudonym"]
        code, out, _ = await audit(url, auditor, "list", "--patient", pseudonym)
        assert [e["action"] for e in json.loads(out)["entries"]][-1] == "resident.erase"

    # the operator verifies the chain on the database
    env = {"HEMHUB_DATABASE_URL": database_url}
    code, out, err = await audit(None, None, "verify", env_extra=env)
    assert code == audit_cli.EXIT_OK, err
    report = json.loads(out)
    assert report["ok"] is True and report["erasures"] == 1
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete")
        conn.execute("UPDATE audit_log SET action = 'nothing' WHERE chain_seq = 1")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_or_delete")
    code, out, err = await audit(None, None, "verify", env_extra=env)
    assert code == audit_cli.EXIT_BROKEN
    assert json.loads(out)["first_broken_link"]["chain_seq"] == 1
    code, _, err = await audit(None, None, "verify", env_extra={"HEMHUB_DATABASE_URL":
                               "postgresql://nobody@127.0.0.1:1/none"})  # fmt: skip
    assert code == audit_cli.EXIT_UNREADABLE and "cannot read the access log" in err
    code, _, err = await audit(None, None, "verify")
    assert code == audit_cli.EXIT_USAGE and "HEMHUB_DATABASE_URL" in err
