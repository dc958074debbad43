"""The wire contract coerces nothing: a value of the wrong JSON type in any field of any
payload rejects the payload, naming the field (docs/wire-contract.md, "Types")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from hemhub.contract import CommandResult, HubCommand, HubConfig, HubStatus, ReadingBatch, Receipt

KEY = "ab" * 32
AT = "2026-11-24T07:02:11Z"

#: One payload of each kind with every field present, numbers that are not integers
#: where the contract says number (so the JSON type of each leaf names the field's type).
FULL: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "ReadingBatch": (
        ReadingBatch,
        {
            "schema_version": 1,
            "hub_id": "hub-1",
            "readings": [
                {
                    "idempotency_key": KEY,
                    "device": {
                        "address": "C0:FF:EE:00:00:01",
                        "manufacturer": "Acme",
                        "model": "BP-1",
                        "serial": "SN-1",
                        "firmware": "1.0",
                    },
                    "measurement_type": "blood_pressure",
                    "characteristic": "2A35",
                    "values": [
                        {"name": "systolic", "loinc": "8480-6", "value": 120.5, "unit": "mm[Hg]"}
                    ],
                    "status": ["irregular_pulse"],
                    "device_time": "2026-11-24T08:02:11",
                    "hub_received_at": AT,
                    "measured_at": AT,
                    "clock": {
                        "source": "offset_measured",
                        "offset_s": -1.5,
                        "hub_clock_synced": True,
                    },
                    "raw_hex": "1e78",
                    "device_sequence": 7,
                },
                {
                    "idempotency_key": "cd" * 32,
                    "device": {"address": "C0:FF:EE:00:00:02"},
                    "measurement_type": "medication_event",
                    "characteristic": "2A35",
                    "values": [],
                    "device_time": None,
                    "hub_received_at": AT,
                    "measured_at": AT,
                    "clock": {"source": "set_by_hub", "hub_clock_synced": False},
                    "raw_hex": "00",
                    "event": {
                        "kind": "missed",
                        "dose_id": 2,
                        "slot": 7,
                        "needs_staff_attention": True,
                    },
                },
            ],
        },
    ),
    "HubStatus": (
        HubStatus,
        {
            "schema_version": 1,
            "hub_id": "hub-1",
            "online": True,
            "at": AT,
            "software_version": "1.2.3",
            "uptime_s": 12.5,
            "outbox_depth": 3,
            "outbox_awaiting_receipt": 2,
            "outbox_rejected": 1,
            "outbox_oldest_age_s": 1.5,
            "outbox_bytes": 4096,
            "last_publish_at": AT,
            "config_version": 2,
            "clock_synced": True,
            "adapter": "ok",
            "disk_free_bytes": 1 << 30,
            "memory_rss_bytes": 1 << 25,
            "cpu_temperature_c": 45.5,
            "alarms": ["disk_low"],
            "devices": [
                {
                    "address": "C0:FF:EE:00:00:01",
                    "profile": "blood_pressure",
                    "last_seen_at": AT,
                    "rssi": -60,
                    "last_reading_at": AT,
                    "readings": 3,
                    "battery_level": 80,
                    "firmware": "1.0",
                    "sessions_failed": 1,
                    "consecutive_failures": 0,
                    "last_error": "ATT timeout",
                    "firmware_update": {
                        "campaign_id": "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40",
                        "version": "1.1",
                        "state": "downloading",
                        "percent": 40,
                        "reason": "resumed",
                        "at": AT,
                    },
                }
            ],
            "publish_errors": 0,
            "last_publish_error": "disk full",
            "software_update": {
                "campaign_id": "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40",
                "version": "1.3.0",
                "state": "reverted",
                "percent": 100,
                "reason": "not confirmed in time",
                "at": AT,
            },
        },
    ),
    "Receipt": (
        Receipt,
        {
            "schema_version": 2,
            "hub_id": "hub-1",
            "at": AT,
            "stored": [KEY],
            "duplicate": [KEY],
            "rejected": [{"idempotency_key": KEY, "reason": "invalid"}],
        },
    ),
    "HubConfig": (
        HubConfig,
        {
            "schema_version": 1,
            "hub_id": "hub-1",
            "version": 2,
            "issued_at": AT,
            "devices": [
                {
                    "address": "C0:FF:EE:00:00:01",
                    "profile": "blood_pressure",
                    "bond": True,
                    "principal": "kommun-a",
                }
            ],
            "software": {
                "version": "1.3.0",
                "target": "hemhub-hub-1.3.0.tar",
                "campaign_id": "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40",
            },
            "firmware": [
                {
                    "address": "C0:FF:EE:00:00:01",
                    "version": "1.1",
                    "target": "firmware/bp-1.1.bin",
                    "campaign_id": "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40",
                }
            ],
        },
    ),
    "HubCommand": (
        HubCommand,
        {
            "schema_version": 1,
            "hub_id": "hub-1",
            "command_id": "0f8e2a54-7a51-4c1b-9a57-3d1e0c6b2f10",
            "issued_at": AT,
            "kind": "wipe_device",
            "address": "C0:FF:EE:00:00:01",
            "profile": "glucose",
        },
    ),
    "CommandResult": (
        CommandResult,
        {
            "schema_version": 1,
            "hub_id": "hub-1",
            "command_id": "0f8e2a54-7a51-4c1b-9a57-3d1e0c6b2f10",
            "kind": "wipe_device",
            "outcome": "wiped",
            "reason": "records deleted",
            "address": "C0:FF:EE:00:00:01",
            "records_before": 12,
            "bond_removed": True,
            "finished_at": AT,
        },
    ),
}

Path = tuple[str | int, ...]


def leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every field (and list item) of a JSON document, with its value."""
    if path:
        yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))


FIELDS = [
    (kind, path, value)
    for kind, (_, doc) in FULL.items()
    for path, value in leaves(doc)
    if value is not None  # null: the field is optional; any non-null type is checked
]

_finite = st.floats(allow_nan=False, allow_infinity=False)
_text = st.text(max_size=8)


def wrong_for(value: Any) -> st.SearchStrategy[Any]:
    """JSON values of another type than the field's (`value`, valid)."""
    if isinstance(value, bool):
        return st.one_of(st.integers(), _finite, _text)
    if isinstance(value, int):
        # 120.0 for an integer is refused too: an integral float is not an integer
        return st.one_of(_finite, st.booleans(), _text, st.integers().map(str))
    if isinstance(value, float):
        return st.one_of(st.booleans(), _text, _finite.map(str))
    if isinstance(value, str):
        return st.one_of(st.integers(), _finite, st.booleans())
    if isinstance(value, list):
        return st.one_of(_text, st.integers(), st.booleans(), st.just({}))
    assert isinstance(value, dict)
    return st.one_of(_text, st.integers(), st.booleans(), st.just([]))


def replaced(doc: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return copy


@pytest.mark.parametrize("kind", FULL)
def test_the_full_examples_are_valid(kind: str) -> None:
    model, doc = FULL[kind]
    model.model_validate_json(json.dumps(doc))


def test_every_field_is_covered() -> None:
    """Each field of each model appears in the examples (else its type goes untested)."""

    def fields(model: type[BaseModel], doc: dict[str, Any]) -> set[str]:
        missing = set(model.model_fields) - set(doc)
        return {f"{model.__name__}.{m}" for m in missing}

    from hemhub.contract import (
        AllowedDevice,
        ClockTrust,
        DesiredFirmware,
        DesiredSoftware,
        DeviceEvent,
        DeviceHealth,
        DeviceIdentity,
        Quantity,
        Reading,
        RejectedKey,
        UpdateProgress,
    )

    batch = FULL["ReadingBatch"][1]
    r0, r1 = batch["readings"]
    missing = (
        fields(ReadingBatch, batch)
        | (fields(Reading, r0) & fields(Reading, r1))
        | fields(DeviceIdentity, r0["device"])
        | fields(Quantity, r0["values"][0])
        | fields(ClockTrust, r0["clock"])
        | fields(DeviceEvent, r1["event"])
        | fields(HubStatus, FULL["HubStatus"][1])
        | fields(DeviceHealth, FULL["HubStatus"][1]["devices"][0])
        | fields(HubConfig, FULL["HubConfig"][1])
        | fields(AllowedDevice, FULL["HubConfig"][1]["devices"][0])
        | fields(DesiredSoftware, FULL["HubConfig"][1]["software"])
        | fields(DesiredFirmware, FULL["HubConfig"][1]["firmware"][0])
        | fields(UpdateProgress, FULL["HubStatus"][1]["software_update"])
        | fields(UpdateProgress, FULL["HubStatus"][1]["devices"][0]["firmware_update"])
        | fields(Receipt, FULL["Receipt"][1])
        | fields(RejectedKey, FULL["Receipt"][1]["rejected"][0])
        | fields(HubCommand, FULL["HubCommand"][1])
        | fields(CommandResult, FULL["CommandResult"][1])
    )
    assert missing == set()


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_a_wrong_typed_value_in_any_field_is_rejected_naming_it(data: st.DataObject) -> None:
    kind, path, value = data.draw(st.sampled_from(FIELDS), label="field")
    wrong = data.draw(wrong_for(value), label="wrong value")
    model, doc = FULL[kind]
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(json.dumps(replaced(doc, path, wrong)))
    locs = [tuple(e["loc"]) for e in info.value.errors()]
    assert any(loc[: len(path)] == path for loc in locs), (path, wrong, locs)


@pytest.mark.parametrize("kind", FULL)
def test_each_field_rejects_each_kind_of_wrong_type(kind: str) -> None:
    """The same, exhaustively for the cases of issue 11: a string, a boolean and a float
    where an integer is due, and a string or a boolean where a number is due."""
    model, doc = FULL[kind]
    for path, value in leaves(doc):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            wrongs: list[Any] = [str(value), True, 1.5, float(value)]
        elif isinstance(value, float):
            wrongs = [str(value), True, False]
        else:
            continue
        for wrong in wrongs:
            with pytest.raises(ValidationError):
                model.model_validate_json(json.dumps(replaced(doc, path, wrong)))


def test_an_integer_is_a_valid_number() -> None:
    """JSON has one number type: 120 where the contract says number is 120.0."""
    model, doc = FULL["ReadingBatch"]
    batch = model.model_validate_json(
        json.dumps(replaced(doc, ("readings", 0, "values", 0, "value"), 120))
    )
    assert isinstance(batch, ReadingBatch)
    value = batch.readings[0].values[0].value
    assert value == 120.0 and isinstance(value, float)


# ------------------------------------------------------------ the hub's own configuration

HUB_TOML = """
hub_id = "hub-1"
mqtt_url = "mqtt://127.0.0.1:1883"
data_dir = "/var/lib/hemhub"
{extra}
[[devices]]
address = "C0:FF:EE:00:00:01"
profile = "blood_pressure"
bond = {bond}
"""


@pytest.mark.parametrize(
    ("extra", "bond", "field"),
    [
        ('keepalive_s = "30"', "true", "keepalive_s"),
        ("keepalive_s = true", "true", "keepalive_s"),
        ("keepalive_s = 30.0", "true", "keepalive_s"),
        ("max_concurrent_sessions = 1.5", "true", "max_concurrent_sessions"),
        ('status_interval_s = "60"', "true", "status_interval_s"),
        ("status_interval_s = true", "true", "status_interval_s"),
        ('allow_insecure = "yes"', "true", "allow_insecure"),
        ("allow_insecure = 1", "true", "allow_insecure"),
        ("timezone = 1", "true", "timezone"),
        ("", '"true"', "devices.0.bond"),
        ("", "1", "devices.0.bond"),
    ],
)
def test_hub_configuration_file_rejects_wrong_types_naming_the_field(
    tmp_path: Any, extra: str, bond: str, field: str
) -> None:
    from gateway.config import GatewayConfig

    path = tmp_path / "hub.toml"
    path.write_text(HUB_TOML.format(extra=extra, bond=bond))
    with pytest.raises(ValidationError) as info:
        GatewayConfig.load(path)
    assert field in {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


def test_hub_configuration_file_of_the_right_types_loads(tmp_path: Any) -> None:
    from gateway.config import GatewayConfig

    path = tmp_path / "hub.toml"
    path.write_text(HUB_TOML.format(extra="status_interval_s = 30\nkeepalive_s = 45", bond="true"))
    config = GatewayConfig.load(path)
    assert (config.status_interval_s, config.keepalive_s) == (30.0, 45)
    assert str(config.data_dir) == "/var/lib/hemhub" and config.devices[0].bond is True


@pytest.mark.parametrize(
    ("path", "wrong", "field"),
    [
        (("version",), "3", "version"),
        (("version",), 3.0, "version"),
        (("version",), True, "version"),
        (("devices", 0, "bond"), "true", "devices.0.bond"),
        (("devices", 0, "bond"), 1, "devices.0.bond"),
    ],
)
def test_retained_hub_configuration_with_a_wrong_type_is_rejected_naming_it(
    tmp_path: Any, path: Path, wrong: Any, field: str
) -> None:
    from gateway.provisioning import ConfigRejected, ProvisioningStore

    store = ProvisioningStore(tmp_path / "config.json", "hub-1", bootstrap=[])
    doc = replaced(FULL["HubConfig"][1], path, wrong)
    with pytest.raises(ConfigRejected, match=f"{field}: "):
        store.accept(json.dumps(doc).encode())
    assert store.version is None  # nothing taken from it
    store.accept(json.dumps(FULL["HubConfig"][1]).encode())
    assert store.version == 2
