"""Ingest's end-to-end receipts over the real Mosquitto and PostgreSQL: after the commit,
each hub is told what became of each key it sent (stored, duplicate, rejected)."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hemhub.contract import Receipt, topic_readings, topic_receipts
from ingest.receipts import readable_keys, receipts_for
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.test_worker import Publisher
from tests.mqtt_helpers import Listener

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def hub_and_receipts(ingesting_hub: str, mqtt_url: str) -> Iterator[tuple[str, Listener]]:
    listener = Listener(mqtt_url, topic_receipts(ingesting_hub))
    yield ingesting_hub, listener
    listener.close()


def next_receipt(listener: Listener, timeout: float = 20.0) -> Receipt:
    try:
        msg = listener.messages.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no receipt arrived") from None
    return Receipt.model_validate_json(msg.payload)


def test_a_stored_batch_is_receipted_stored_then_duplicate(
    hub_and_receipts: tuple[str, Listener], mqtt_url: str
) -> None:
    hub, listener = hub_and_receipts
    sent = batch(hub, bp_reading(measured_at=NOW, salt="a"), bp_reading(measured_at=NOW, salt="b"))
    keys = sorted(r.idempotency_key for r in sent.readings)
    pub = Publisher(mqtt_url)
    try:
        pub.publish(topic_readings(hub), sent.model_dump_json())
        first = next_receipt(listener)
        pub.publish(topic_readings(hub), sent.model_dump_json())
        second = next_receipt(listener)
    finally:
        pub.close()
    assert (first.hub_id, sorted(first.stored), first.duplicate, first.rejected) == (
        hub,
        keys,
        [],
        [],
    )
    assert (second.stored, sorted(second.duplicate), second.rejected) == ([], keys, [])


def test_an_invalid_batch_is_receipted_rejected_with_a_code_and_no_detail(
    hub_and_receipts: tuple[str, Listener], mqtt_url: str
) -> None:
    hub, listener = hub_and_receipts
    good = batch(hub, bp_reading(measured_at=NOW, salt="bad"))
    wrong = json.loads(good.model_dump_json())
    wrong["readings"][0]["values"] = "120/80"
    pub = Publisher(mqtt_url)
    try:
        pub.publish(topic_readings(hub), json.dumps(wrong))
        receipt = next_receipt(listener)
    finally:
        pub.close()
    assert receipt.stored == [] and receipt.duplicate == []
    assert [(r.idempotency_key, r.reason) for r in receipt.rejected] == [
        (good.readings[0].idempotency_key, "invalid")
    ]


def test_a_batch_naming_another_hub_is_rejected_to_the_sender(
    hub_and_receipts: tuple[str, Listener], mqtt_url: str
) -> None:
    hub, listener = hub_and_receipts
    other = batch(unique_hub_id("other"), bp_reading(measured_at=NOW, salt="other"))
    pub = Publisher(mqtt_url)
    try:
        pub.publish(topic_readings(hub), other.model_dump_json())
        receipt = next_receipt(listener)
    finally:
        pub.close()
    assert receipt.hub_id == hub
    assert [(r.idempotency_key, r.reason) for r in receipt.rejected] == [
        (other.readings[0].idempotency_key, "hub_mismatch")
    ]


def test_readable_keys_of_hostile_payloads() -> None:
    key = "ab" * 32
    assert readable_keys(b"{not json") == []
    assert readable_keys(b"[1, 2]") == []
    assert readable_keys(b'{"readings": "x"}') == []
    payload = {"readings": [{"idempotency_key": key}, {"idempotency_key": "AB" * 32}, 3, {}]}
    assert readable_keys(json.dumps(payload).encode()) == [key]
    assert readable_keys(b'{"readings": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}") == []


def test_receipts_are_split_at_the_key_limit_and_keep_each_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = unique_hub_id("split")
    readings = [bp_reading(measured_at=NOW, salt=str(i)) for i in range(1200)]
    batches = [batch(hub, *readings[i : i + 400]) for i in range(0, 1200, 400)]
    stored = {r.idempotency_key for r in readings[::2]}
    monkeypatch.setattr("ingest.receipts.MAX_KEYS_PER_RECEIPT", 500)
    out = receipts_for(list(batches), stored, NOW)
    parsed = [Receipt.model_validate_json(payload) for _, payload in out]
    assert {topic for topic, _ in out} == {topic_receipts(hub)}
    assert [len(r.stored) + len(r.duplicate) for r in parsed] == [500, 500, 200]
    assert {k for r in parsed for k in r.stored} == stored
    every = {r.idempotency_key for r in readings}
    assert {k for r in parsed for k in r.duplicate} == every - stored


def test_a_batch_the_database_refuses_is_rejected_without_its_detail(
    hub_and_receipts: tuple[str, Listener], mqtt_url: str
) -> None:
    hub, listener = hub_and_receipts
    refused = batch(hub, bp_reading(measured_at=NOW, salt="nul"))
    raw = json.loads(refused.model_dump_json())
    raw["readings"][0]["status"] = ["bad\u0000flag"]  # valid JSON, PostgreSQL refuses it
    pub = Publisher(mqtt_url)
    try:
        pub.publish(topic_readings(hub), json.dumps(raw))
        receipt = next_receipt(listener)
    finally:
        pub.close()
    assert [(r.idempotency_key, r.reason) for r in receipt.rejected] == [
        (refused.readings[0].idempotency_key, "storage_failed")
    ]
    assert receipt.stored == [] and receipt.duplicate == []
