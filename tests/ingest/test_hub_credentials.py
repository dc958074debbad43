"""Hub broker passwords in Mosquitto's $7$ format, checked against mosquitto_passwd."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from ingest.hub_credentials import mosquitto_hash, new_password, password_file, verify


def test_hash_and_verify() -> None:
    password = new_password()
    assert len(password) >= 43
    hashed = mosquitto_hash(password)
    assert hashed.startswith("$7$101$")
    assert verify(password, hashed)
    assert not verify(password + "x", hashed)
    assert not verify(password, "plain")
    assert mosquitto_hash(password) != hashed  # salted


def test_known_value_of_mosquitto_passwd() -> None:
    # `mosquitto_passwd -b f hubx secret` of Mosquitto 2.0.11 wrote this line.
    line = (
        "$7$101$kLO14YWdOp8aDc4a$M3j+fypCs6eQsjMn7uzym5j0F/xblAb5slN6S6tmlKMcTgnbTvKO/"
        "c9hQ6pEAOfYD/yzQMbH01cb51BxxMBa5w=="
    )
    assert verify("secret", line)
    assert mosquitto_hash("secret", salt=base64.b64decode("kLO14YWdOp8aDc4a")) == line


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_mosquitto_passwd_reads_our_file(tmp_path: Path) -> None:
    # mosquitto_passwd -U re-hashes plain lines only: a file of ours it leaves as is,
    # and a line it writes itself we can verify.
    f = tmp_path / "hubs.passwd"
    ours = password_file([("hub-b", mosquitto_hash("pw-b")), ("hub-a", mosquitto_hash("pw-a"))])
    assert ours.splitlines()[0].startswith("hub-a:$7$")
    f.write_text(ours)
    subprocess.run(["mosquitto_passwd", "-b", str(f), "hub-c", "pw-c"], check=True)
    lines = dict(line.split(":", 1) for line in f.read_text().splitlines())
    assert verify("pw-a", lines["hub-a"]) and verify("pw-c", lines["hub-c"])


def test_password_file_refuses_what_mosquitto_would_misread() -> None:
    with pytest.raises(ValueError):
        password_file([("hub:a", mosquitto_hash("x"))])
    with pytest.raises(ValueError):
        password_file([("hub-a", "plain")])
