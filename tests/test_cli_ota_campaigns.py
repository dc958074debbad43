"""`hemhub ota artifact|campaign|hub ...`: each command one request to the API, JSON out,
the fleet command line's exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from api.auth import Role, issue_token
from hemhub import fleet_cli, ota_cli
from hemhub.cli import build_parser
from hemhub.ota_cli_campaigns import register_campaigns
from ingest import registry
from ingest.migrations import migrate
from tests.api.helpers import live_server, make_settings


def parser() -> argparse.ArgumentParser:
    """`hemhub`'s own parser: `hemhub ota` with the rollout groups."""
    return build_parser()


def test_the_rollout_groups_are_registered_under_hemhub_ota() -> None:
    assert register_campaigns in ota_cli.GROUPS
    args = parser().parse_args(["ota", "campaign", "pause", "c-1", "--reason", "calls"])
    assert (args.campaign_id, args.reason) == ("c-1", "calls")


async def ota(
    capsys: pytest.CaptureFixture[str], url: str, token_file: Path, *argv: str
) -> tuple[int, str, str]:
    args = parser().parse_args(["ota", *argv, "--api-url", url, "--token-file", str(token_file)])
    code = await asyncio.to_thread(args.func, args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_register_create_start_and_read_a_campaign(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(database_url)
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False, campaign_tick_s=0)
    token = tmp_path / "token"
    token.write_text(issue_token(settings, sub="hmc-1", role=Role.HMC, tenant="a"))
    async with live_server(settings) as server:
        url = server.base_url
        code, out, err = await ota(capsys, url, token, "artifact", "register", "--kind",
            "hub_software", "--version", "3.0", "--target", "hemhub-hub-3.0.tar")  # fmt: skip
        assert code == fleet_cli.EXIT_CONFLICT and "the principal is not registered" in err
        with psycopg.connect(database_url, autocommit=True) as conn:
            registry.ensure_tenant(conn, "a", "A")
        code, out, err = await ota(
            capsys,
            url,
            token,
            "artifact",
            "register",
            "--kind",
            "hub_software",
            "--version",
            "3.0",
            "--target",
            "hemhub-hub-3.0.tar",
        )
        assert (code, err) == (0, "")
        artifact = json.loads(out)
        assert (artifact["version"], artifact["created_by"]) == ("3.0", "hmc-1")
        code, out, err = await ota(
            capsys, url, token, "campaign", "create", "--name", "x", "--artifact-id",
            artifact["id"], "--waves", "10", "--waves", "100",
        )  # fmt: skip
        assert code == fleet_cli.EXIT_CONFLICT
        assert "hemhub ota campaign create: 409" in err and "no hub or device" in err
        code, out, err = await ota(
            capsys, url, token, "campaign", "create", "--name", "x", "--artifact-id",
            artifact["id"], "--waves", "10",
        )  # fmt: skip
        assert code == fleet_cli.EXIT_INVALID and "the last wave is 100" in err
        code, out, err = await ota(
            capsys, url, token, "hub", "time-zone", "nope", "--time-zone", "UTC"
        )
        assert code == fleet_cli.EXIT_NOT_FOUND
        code, out, _ = await ota(capsys, url, token, "artifact", "list")
        assert code == 0 and [a["id"] for a in json.loads(out)] == [artifact["id"]]
        code, out, _ = await ota(capsys, url, token, "campaign", "list")
        assert code == 0 and json.loads(out) == []
