"""`hemhub fleet`: a real process talking to a real API; answers, errors, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from api.auth import Role, issue_token
from hemhub import fleet_cli
from hemhub.fleet_cli import Arg, FleetCommand, build_request
from ingest.migrations import migrate
from tests.api.helpers import live_server, make_settings


async def fleet(base_url: str | None, token: str | None, *argv: str) -> tuple[int, str, str]:
    return await hemhub_command("fleet", base_url, token, *argv)


async def hemhub_command(
    command: str,
    base_url: str | None,
    token: str | None,
    *argv: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """`hemhub COMMAND ARGV...` as a process, with no HEMHUB_* of the machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMHUB_")}
    if base_url:
        env["HEMHUB_API_URL"] = base_url
    if token:
        env["HEMHUB_API_TOKEN"] = token
    env.update(env_extra or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hemhub.cli",
        command,
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_answers_as_json_and_errors_as_exit_codes(tmp_path: Path, database_url: str) -> None:
    migrate(database_url)
    settings = make_settings(tmp_path, database_url, api_runs_hub_link=False)
    token = issue_token(settings, sub="tech-1", role=Role.HMC, tenant="a")
    async with live_server(settings) as server:
        code, out, err = await fleet(server.base_url, token, "me", "show")
        assert (code, err) == (0, "")
        assert json.loads(out) == {
            "sub": "tech-1",
            "role": "hmc",
            "tenant": "a",
            "care_units": None,
            "name": None,
            "time_zone": "Europe/Stockholm",
        }

        code, out, err = await fleet(server.base_url, token + "x", "me", "show")
        assert code == fleet_cli.EXIT_REFUSED and out == ""
        assert err.startswith("hemhub fleet me show: 401")

        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        code, out, _ = await fleet(
            None, None, "me", "show", "--api-url", server.base_url, "--token-file", str(token_file)
        )
        assert code == 0 and json.loads(out)["sub"] == "tech-1"

    code, _, err = await fleet("http://127.0.0.1:9", token, "me", "show")
    assert code == fleet_cli.EXIT_FAILED and "cannot be reached" in err
    code, _, err = await fleet("http://127.0.0.1:9", None, "me", "show")
    assert code == fleet_cli.EXIT_USAGE and "HEMHUB_API_TOKEN" in err
    code, _, err = await fleet(None, token, "no-such-group")
    assert code == fleet_cli.EXIT_USAGE


def test_a_command_becomes_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    command = FleetCommand(
        "devices",
        "return",
        "POST",
        "/api/v1/fleet/devices/{device_id}/return",
        "return",
        path_args=("device_id",),
        body_args=(
            Arg("reason", "why"),
            Arg("tags", "tags", multiple=True),
            Arg("days", "days", type=int),
        ),
        query_args=(Arg("dry_run", "dry run"),),
    )
    args = argparse.Namespace(
        device_id="a/b",
        reason="broken",
        tags=["x", "y"],
        days=None,
        dry_run="1",
        body='{"reason": "overridden", "extra": true}',
        api_url="http://h:1/",
        token_file=None,
    )
    monkeypatch.setenv("HEMHUB_API_TOKEN", "t0k")
    request = build_request(command, args)
    assert request.full_url == "http://h:1/api/v1/fleet/devices/a%2Fb/return?dry_run=1"
    assert request.get_method() == "POST"
    assert request.headers["Authorization"] == "Bearer t0k"
    assert json.loads(request.data) == {"reason": "broken", "extra": True, "tags": ["x", "y"]}  # type: ignore[arg-type]


def test_a_body_that_is_not_a_json_object_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = FleetCommand("g", "v", "POST", "/x", "x", body_args=(Arg("a", "a"),))
    args = argparse.Namespace(a=None, body="[1]", api_url="http://h", token_file=None)
    monkeypatch.setenv("HEMHUB_API_TOKEN", "t")
    with pytest.raises(fleet_cli.FleetCliError, match="JSON object"):
        build_request(command, args)
