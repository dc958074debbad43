"""Hub credentials issued through the API reach the shipped Mosquitto configuration:
`hemhub broker-passwd` writes the password file, a reload lets the hub in with the
password shown once, and a revoked hub is refused after the next rewrite and reload."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from api.auth import Role
from ingest import registry
from ingest.migrations import migrate
from tests.api.helpers import api_client, bearer, make_settings
from tests.deploy.test_mosquitto_config import (
    BACKEND,
    INGEST,
    Broker,
    Client,
    mosquitto_binary,
    start_broker,
)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("HEMHUB_REQUIRE_REAL_SERVICES") == "1":
            pytest.fail("HEMHUB_REQUIRE_REAL_SERVICES=1 but mosquitto is not installed")
        pytest.skip("mosquitto is not installed on this machine")
    started = start_broker(binary, {u: uuid.uuid4().hex for u in (INGEST, BACKEND)})
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.root, ignore_errors=True)


def rewrite_and_reload(broker: Broker, database_url: str) -> None:
    """What the operator runs: `hemhub broker-passwd --output …`, then a reload (SIGHUP)."""
    target = broker.root / "etc" / "hemhub-hubs.passwd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMHUB_")}
    env["HEMHUB_DATABASE_URL"] = database_url
    subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "broker-passwd", "--output", str(target)],
        env=env,
        check=True,
        capture_output=True,
    )
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    if os.geteuid() == 0:  # the broker reads it as its own user
        owner = pwd.getpwnam("mosquitto") if _has_user("mosquitto") else pwd.getpwnam("nobody")
        os.chown(target, owner.pw_uid, owner.pw_gid)
    broker.process.send_signal(signal.SIGHUP)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def admitted(broker: Broker, hub: str, password: str) -> bool:
    client = Client(broker, hub, password=password)
    try:
        rc = client.connect()
        return rc is not None and not rc.is_failure
    finally:
        client.close()


def eventually(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


async def test_issued_password_admits_the_hub_until_revoked(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, "a", "Kommun A")
    settings = make_settings(tmp_path, database_url)
    hmc = bearer(settings, Role.HMC, "a", "hmc@a")
    hub = f"pw-hub-{uuid.uuid4().hex[:8]}"
    async with api_client(settings) as client:
        assert (await client.post("/api/v1/hubs", headers=hmc, json={"id": hub})).status_code == 201
        r = await client.post(f"/api/v1/hubs/{hub}/credentials", headers=hmc)
        password = r.json()["password"]
        assert not admitted(broker, hub, password)  # not in the broker's file yet
        rewrite_and_reload(broker, database_url)
        assert eventually(lambda: admitted(broker, hub, password)), broker.log
        assert not admitted(broker, hub, password + "x")
        assert not admitted(broker, "pw-other-hub", password)

        r = await client.delete(f"/api/v1/hubs/{hub}/credentials?reason=stolen", headers=hmc)
        assert r.status_code == 200
        rewrite_and_reload(broker, database_url)
        assert eventually(lambda: not admitted(broker, hub, password)), broker.log
