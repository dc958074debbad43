"""What an ingest worker receives, and what each message becomes: a batch of readings,
a hub status, a hub's result of a command, a dead letter with its reason, or nothing (a
retained status cleared).

Parsing never raises on a payload: anything invalid becomes a `DeadLetter`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import psycopg
from pydantic import ValidationError

from hemhub.contract import (
    ACCEPTED_SCHEMA_VERSIONS,
    CommandResult,
    HubStatus,
    ReadingBatch,
    TopicError,
    parse_topic,
)
from ingest.pipeline import DeadLetter, StatusUpdate

#: Larger payloads are dead-lettered unparsed (a full 500-reading batch is ~250 KB less).
# The broker's max_packet_size (deploy/mosquitto): a full 500-reading batch fits.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
#: Reason texts quote validation errors; keep them readable and bounded.
MAX_REASON = 1000


class Inbound(NamedTuple):
    """A message as paho delivered it, tagged with the connection it came on (a tuple:
    one is made per message on the network thread)."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime


# None: nothing to store (ack only)
Parsed = ReadingBatch | StatusUpdate | CommandResult | DeadLetter | None


def failure(exc: BaseException) -> str:
    """The dead-letter reason for a message that could not be stored."""
    if isinstance(exc, psycopg.Error):
        text = f"storage rejected: {exc.sqlstate} {exc}"
    else:
        text = f"storage failed: {type(exc).__name__}: {exc}"
    return text[:MAX_REASON]


def _validation_reason(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False)
    for e in errs:
        if e["type"] == "json_invalid":
            return f"invalid JSON: {e['msg']}"
        if e["loc"][:1] == ("schema_version",):
            return (
                f"unsupported schema_version {e.get('input')!r}"
                f" (this ingest speaks {', '.join(map(str, ACCEPTED_SCHEMA_VERSIONS))})"
            )
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errs[:5]
    )
    more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
    return f"validation failed, {len(errs)} error(s): {shown}{more}"


def parse_message(
    topic: str, payload: bytes, received_at: datetime, *, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Parsed:
    """Turn one MQTT message into what to store: a batch, a status, a command's result,
    or a dead letter."""

    def dead(reason: str) -> DeadLetter:
        return DeadLetter(topic, reason[:MAX_REASON], payload[:max_bytes])

    if len(payload) > max_bytes:
        return dead(f"oversized: {len(payload)} bytes > {max_bytes} (payload truncated)")
    try:
        hub_id, kind = parse_topic(topic)
    except TopicError as exc:
        return dead(f"topic: {exc}")
    if kind == "readings":
        try:
            batch = ReadingBatch.model_validate_json(payload)
        except ValidationError as exc:
            return dead(_validation_reason(exc))
        if batch.hub_id != hub_id:
            return dead(f"hub_id {batch.hub_id!r} in payload does not match topic hub {hub_id!r}")
        return batch
    if kind == "status":
        if not payload:
            return None  # a retained status being cleared: nothing to record
        try:
            status = HubStatus.model_validate_json(payload)
        except ValidationError as exc:
            return dead(_validation_reason(exc))
        if status.hub_id != hub_id:
            return dead(f"hub_id {status.hub_id!r} in payload does not match topic hub {hub_id!r}")
        return StatusUpdate(status, received_at)
    if kind == "results":
        try:
            result = CommandResult.model_validate_json(payload)
        except ValidationError as exc:
            return dead(_validation_reason(exc))
        if result.hub_id != hub_id:
            return dead(f"hub_id {result.hub_id!r} in payload does not match topic hub {hub_id!r}")
        return result
    return dead(f"ingest does not consume {kind!r} topics")


#: The reason code a hub is told for each kind of dead letter (`rejection_code`), by
#: the start of the reason text made above: never the text itself, which may quote
#: internal detail (SQL, exception text).
_REJECTION_CODES = (
    ("invalid JSON", "invalid_json"),
    ("unsupported schema_version", "unsupported_schema"),
    ("validation failed", "invalid"),
    ("hub_id ", "hub_mismatch"),
    ("storage rejected", "storage_failed"),
    ("storage failed", "storage_failed"),
)


def rejection_code(reason: str) -> str:
    """The short reason code of a dead letter's reason, for the hub's receipt."""
    for prefix, code in _REJECTION_CODES:
        if reason.startswith(prefix):
            return code
    return "rejected"
