"""`hemhub fleet residents subject-access`: a real process fetches a resident's FHIR
Bundle from a real API; refusals are exit codes with the OperationOutcome's reason."""

from __future__ import annotations

import json
from pathlib import Path

from api.auth import Role, issue_token
from hemhub import fleet_cli
from ingest.migrations import migrate
from tests.api.fhir_helpers import validate
from tests.api.helpers import live_server, make_settings, seed_database
from tests.test_cli_fleet import fleet


async def test_subject_access_to_a_file(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    seed = seed_database(database_url)
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    hmc = issue_token(settings, sub="hmc@a", role=Role.HMC, tenant="a")
    async with live_server(settings) as server:
        code, out, err = await fleet(
            server.base_url, hmc, "residents", "subject-access", str(seed.alice)
        )
        assert (code, err) == (0, "")
        target = tmp_path / "alice.json"
        target.write_text(out)
        bundle = json.loads(target.read_text())
        validate(bundle)
        assert bundle["type"] == "collection"
        assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {
            "Patient",
            "Observation",
        }
        nurse = issue_token(settings, sub="nurse@a", role=Role.NURSE, tenant="a")
        code, _, err = await fleet(
            server.base_url, nurse, "residents", "subject-access", str(seed.alice)
        )
        assert code == fleet_cli.EXIT_REFUSED and "may not do this" in err
        other = issue_token(settings, sub="hmc@b", role=Role.HMC, tenant="b")
        code, _, err = await fleet(
            server.base_url, other, "residents", "subject-access", str(seed.alice)
        )
        assert code == fleet_cli.EXIT_NOT_FOUND and "patient not found" in err
