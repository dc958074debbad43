"""The wire contract: topics, validation, and the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from hemhub.contract import (
    ReadingBatch,
    TopicError,
    json_schema,
    parse_topic,
    topic_readings,
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


def _payload(**changes: object) -> dict[str, object]:
    data = json.loads(batch("hub-1", bp_reading()).model_dump_json())
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(hub_id="a/b"), "hub_id"),
        (lambda d: d["readings"][0].update(extra=1), "extra"),
        (lambda d: d["readings"][0].update(measured_at="2026-11-24T08:00:00"), "UTC offset"),
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
