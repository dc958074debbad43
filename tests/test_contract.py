"""The wire contract: topics, validation, and the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from hemhub.contract import (
    CommandResult,
    HubCommand,
    HubStatus,
    ReadingBatch,
    TopicError,
    json_schema,
    parse_topic,
    topic_readings,
    topic_results,
)
from tests.factories import batch, bp_reading

DOCS = Path(__file__).resolve().parent.parent / "docs" / "wire-contract.schema.json"


def test_published_schema_matches_the_models() -> None:
    assert json.loads(DOCS.read_text()) == json_schema(), "run `make schema`"


def test_topics_round_trip_and_reject_foreign_ones() -> None:
    assert parse_topic(topic_readings("hub-1")) == ("hub-1", "readings")
    for bad in ("hemhub/v1/hubs/+/readings", "hemhub/v2/hubs/a/readings", "hemhub/v1/hubs/a/x"):
        with pytest.raises(TopicError):
            parse_topic(bad)


def test_a_hubs_results_have_a_topic_of_their_own() -> None:
    assert parse_topic(topic_results("hub-1")) == ("hub-1", "results")


_COMMAND_ID = "0f8e2a54-7a51-4c1b-9a57-3d1e0c6b2f10"
_AT = "2026-11-24T07:02:11Z"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": "wipe_device", "address": "C0:FF:EE:00:00:01"}, "needs the device's profile"),
        ({"kind": "wipe_device", "profile": "glucose"}, "needs the device's address"),
        ({"kind": "forget_device"}, "needs the device's address"),
        (
            {"kind": "forget_device", "address": "C0:FF:EE:00:00:01", "profile": "glucose"},
            "takes no profile",
        ),
        ({"kind": "wipe_hub", "address": "C0:FF:EE:00:00:01"}, "names no device"),
        ({"kind": "reboot"}, "kind"),
        ({"kind": "wipe_hub", "command_id": "not-a-uuid"}, "command_id"),
    ],
)
def test_a_command_names_what_its_kind_needs(fields: dict[str, object], reason: str) -> None:
    doc = {"hub_id": "hub-1", "command_id": _COMMAND_ID, "issued_at": _AT, **fields}
    with pytest.raises(ValidationError, match=reason):
        HubCommand.model_validate_json(json.dumps(doc))


def test_a_command_keeps_addresses_upper_case() -> None:
    doc = {"hub_id": "hub-1", "command_id": _COMMAND_ID, "issued_at": _AT}
    command = HubCommand.model_validate_json(
        json.dumps({**doc, "kind": "forget_device", "address": "c0:ff:ee:00:00:01"})
    )
    assert command.address == "C0:FF:EE:00:00:01"


@pytest.mark.parametrize("outcome", ["unsupported", "failed"])
def test_a_result_that_is_not_wiped_says_why(outcome: str) -> None:
    doc = {
        "hub_id": "hub-1",
        "command_id": _COMMAND_ID,
        "kind": "wipe_device",
        "outcome": outcome,
        "finished_at": _AT,
    }
    with pytest.raises(ValidationError, match="must say why"):
        CommandResult.model_validate_json(json.dumps(doc))
    CommandResult.model_validate_json(json.dumps({**doc, "reason": "no delete in UDS"}))


def _payload(**changes: object) -> dict[str, object]:
    data = json.loads(batch("hub-1", bp_reading()).model_dump_json())
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(schema_version=3), "schema_version"),
        (lambda d: d.update(hub_id="a/b"), "hub_id"),
        (lambda d: d["readings"][0].update(extra=1), "extra"),
        (lambda d: d["readings"][0].update(measured_at="2026-11-24T08:00:00"), "timezone info"),
        # year 9999 at -01:00 is not representable in UTC (it crashed the alert engine)
        (
            lambda d: d["readings"][0].update(measured_at="9999-12-31T23:59:59-01:00"),
            "less than 2101-01-01T00:00:00Z",
        ),
        (
            lambda d: d["readings"][0].update(hub_received_at="0001-01-01T00:00:00+01:00"),
            "greater than or equal to 1970-01-01T00:00:00Z",
        ),
        (
            lambda d: d["readings"][0].update(measured_at="1969-12-31T23:59:59Z"),
            "greater than or equal to 1970-01-01T00:00:00Z",
        ),
        (
            lambda d: d["readings"][0].update(measured_at="2101-01-01T00:00:00Z"),
            "less than 2101-01-01T00:00:00Z",
        ),
        (lambda d: d["readings"][0]["values"][0].update(value="high"), "value"),
        (lambda d: d["readings"][0].update(raw_hex="xyz"), "raw_hex"),
        (lambda d: d.update(readings=[]), "readings"),
        (lambda d: d.update(readings=d["readings"] * 2), "repeat an idempotency key"),
    ],
)
def test_invalid_payloads_are_rejected_with_a_reason(mutate: object, reason: str) -> None:
    data = _payload()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ValidationError) as info:
        ReadingBatch.model_validate_json(json.dumps(data))
    assert reason in str(info.value)


def test_special_values_travel_as_null_never_as_numbers() -> None:
    data = _payload()
    data["readings"][0]["values"][0]["value"] = None  # type: ignore[index]
    parsed = ReadingBatch.model_validate_json(json.dumps(data))
    assert parsed.readings[0].values[0].value is None
    text = json.dumps(data).replace('"value": null', '"value": NaN', 1)
    with pytest.raises(ValidationError, match="finite"):
        ReadingBatch.model_validate_json(text)


@pytest.mark.parametrize(
    "at",
    [
        "1970-01-01T00:00:00Z",  # a hub without a real-time clock before NTP answers
        "2000-01-01T00:00:00Z",  # a device clock reset
        "2100-12-31T23:59:59.999999Z",
        "2101-01-01T00:59:00+01:00",  # still 2100 in UTC
    ],
)
def test_timestamps_inside_the_window_are_accepted(at: str) -> None:
    data = _payload()
    data["readings"][0].update(measured_at=at, hub_received_at=at)  # type: ignore[index]
    parsed = ReadingBatch.model_validate_json(json.dumps(data))
    assert parsed.readings[0].measured_at.isoformat().startswith(at[:4])


def test_status_timestamps_are_bounded_too() -> None:
    status = {"hub_id": "hub-1", "online": True, "at": "9999-12-31T23:59:59-01:00"}
    with pytest.raises(ValidationError, match="less than 2101-01-01T00:00:00Z"):
        HubStatus.model_validate_json(json.dumps(status))
    device = {"address": "AA:BB:CC:DD:EE:FF", "profile": "blood_pressure"}
    device["last_seen_at"] = "9999-12-31T23:30:00-01:00"
    status = {"hub_id": "hub-1", "online": True, "devices": [device]}
    with pytest.raises(ValidationError, match="less than 2101-01-01T00:00:00Z"):
        HubStatus.model_validate_json(json.dumps(status))
