"""The gateway's start-up refusals (a password in clear text over the network, a
password in a configuration file others can read) and its log formats: one JSON object
a line with `--log-format json` or HEMHUB_LOG_FORMAT=json (the real process against the
real broker), syslog-priority prefixes when stderr is the journal."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import GatewayConfig
from gateway.credentials import InsecureCredentialsError
from hemhub.contract import topic_readings
from tests.factories import unique_hub_id
from tests.mqtt_helpers import Listener, clear_retained_status


def _config(tmp_path: Path, **kw: object) -> GatewayConfig:
    return GatewayConfig(hub_id="hub-7", data_dir=tmp_path, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["mqtt://hub-7:secret@broker.example.org:1883", "mqtt://hub-7:secret@10.0.0.5"],
)
def test_password_in_clear_text_to_another_host_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="clear text over mqtt://"):
        _config(tmp_path, mqtt_url=url)
    secret = tmp_path / "pw"
    plain_host = url.split("@")[1]
    with pytest.raises(ValidationError, match="allow_insecure"):
        _config(tmp_path, mqtt_url=f"mqtt://{plain_host}", mqtt_password_file=secret)
    # Explicitly allowed (a lab), over TLS, or to this machine: accepted.
    _config(tmp_path, mqtt_url=url, allow_insecure=True)
    _config(tmp_path, mqtt_url=url.replace("mqtt://", "mqtts://"))
    _config(tmp_path, mqtt_url="mqtt://hub-7:secret@127.0.0.1:1883")
    _config(tmp_path, mqtt_url="mqtt://hub-7:secret@localhost")
    _config(tmp_path, mqtt_url=f"mqtt://{plain_host}")  # no password at all


def test_password_in_the_url_and_in_a_file_is_ambiguous(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="give one of them"):
        _config(
            tmp_path,
            mqtt_url="mqtts://hub-7:secret@broker.example.org",
            mqtt_password_file=tmp_path / "pw",
        )


def test_password_in_the_url_needs_a_config_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    path.write_text(
        json.dumps(
            {
                "hub_id": "hub-7",
                "mqtt_url": "mqtts://hub-7:secret@broker.example.org",
                "data_dir": str(tmp_path),
            }
        )
    )
    path.chmod(0o644)
    with pytest.raises(InsecureCredentialsError, match="chmod 600"):
        GatewayConfig.load(path)
    path.chmod(0o600)
    assert GatewayConfig.load(path).url_has_password
    # Without a password in it, a configuration may be world-readable.
    path.write_text(json.dumps({"hub_id": "hub-7", "mqtt_url": "mqtts://b", "data_dir": "."}))
    path.chmod(0o644)
    assert not GatewayConfig.load(path).url_has_password


def _gateway(args: list[str], stderr: Path, **env: str) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hemhub.cli", "gateway", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )


def test_refused_configuration_is_one_clear_error_at_start(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        'hub_id = "hub-7"\nmqtt_url = "mqtt://hub-7:secret@broker.example.org"\n'
        f'data_dir = "{tmp_path}"\n'
    )
    config.chmod(0o600)
    log = tmp_path / "stderr.log"
    log.touch()
    st = log.stat()
    # Under systemd with stderr going to the journal: plain lines with a priority prefix.
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    env.pop("HEMHUB_LOG_FORMAT", None)
    proc = _gateway(["--config", str(config)], log, **env)
    assert proc.wait(timeout=60) == 78  # EX_CONFIG
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("<3>gateway.service: refusing configuration")
    assert "clear text over mqtt://" in lines[0] and "allow_insecure" in lines[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["option", "environment"])
def test_gateway_logs_one_json_object_a_line(tmp_path: Path, mqtt_url: str, how: str) -> None:
    hub = unique_hub_id()
    config = tmp_path / "hub.json"
    config.write_text(
        json.dumps(
            {
                "hub_id": hub,
                "mqtt_url": mqtt_url,
                "data_dir": str(tmp_path / "hub"),
                "status_interval_s": 0.5,
                "min_disk_free_percent": 100,  # a disk alarm, logged with extra fields
            }
        )
    )
    scenario = tmp_path / "home.json"
    scenario.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "address": "C0:FF:EE:00:08:01",
                        "profile": "blood_pressure",
                        "serial": "LOG-1",
                        "scenario": "normotensive",
                        "seed": 1,
                        "first_after_s": 0.2,
                        "every_s": 60,
                        "max_uses": 1,
                    }
                ]
            }
        )
    )
    args = ["--config", str(config), "--simulate", str(scenario)]
    env = {"HEMHUB_LOG_FORMAT": "json"} if how == "environment" else {}
    if how == "option":
        args = ["--log-format", "json", *args]
    log = tmp_path / "stderr.log"
    listener = Listener(mqtt_url, topic_readings(hub))
    proc = _gateway(args, log, **env)
    try:
        batches = listener.batches(1, timeout=60)
        assert sum(len(b.readings) for b in batches) == 1, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
        clear_retained_status(mqtt_url, hub)

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["time"].endswith("+00:00")
    messages = [(r["logger"], r["message"]) for r in records]
    assert any(lg == "gateway.service" and "starting" in m for lg, m in messages), messages
    assert any(lg == "gateway.publisher" and "connected" in m for lg, m in messages), messages
    [disk] = [r for r in records if r.get("alarm") == "disk_low"]
    assert disk["level"] == "WARNING" and disk["active"] is True
    assert disk["logger"] == "gateway.hub" and "disk space" in disk["message"]


def test_json_formatter_carries_extra_fields_and_the_traceback() -> None:
    from hemhub.logs import JsonFormatter

    logger = logging.getLogger("hemhub.test.json")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "hub %s failed",
            ("hub-7",),
            sys.exc_info(),
            extra={"device": "C0:FF:EE:00:00:01", "attempt": 3},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "hub hub-7 failed" and out["level"] == "ERROR"
    assert out["logger"] == "hemhub.test.json"
    assert (out["device"], out["attempt"]) == ("C0:FF:EE:00:00:01", 3)
    assert out["exc"].startswith("Traceback") and "ValueError: boom" in out["exc"]
