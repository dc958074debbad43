"""Wire contract v2: what a hub publishes over MQTT and what the ingest tier accepts.

These models are the single definition of the payloads; `docs/wire-contract.schema.json`
is generated from them (`hemhub schema`). A payload that fails validation is rejected
whole, with the reason, and never half-stored.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: 2 added end-to-end receipts (`Receipt`); a v2 ingest still accepts v1 payloads.
SCHEMA_VERSION: Literal[2] = 2
#: Payload versions this ingest accepts. Upgrade order: ingest first, then hubs (a v2
#: hub waits for receipts that only a v2 ingest sends; docs/wire-contract.md).
ACCEPTED_SCHEMA_VERSIONS = (1, 2)
# The topic root stays v1: v2 only adds a topic and payload versions, so v1 and v2 hubs
# share the topics, the broker ACL and ingest's subscriptions during a rolling upgrade.
# A new root would split the fleet in two and need both trees in every ACL.
TOPIC_ROOT = "hemhub/v1/hubs"

# A hub id doubles as the MQTT topic level and the broker user name, so it must not
# contain MQTT wildcards, separators or anything a shell or an ACL file would misread.
HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_HUB_ID_RE = re.compile(HUB_ID_PATTERN)

MAX_READINGS_PER_MESSAGE = 500


def topic_readings(hub_id: str) -> str:
    return f"{TOPIC_ROOT}/{hub_id}/readings"


def topic_status(hub_id: str) -> str:
    return f"{TOPIC_ROOT}/{hub_id}/status"


def topic_config(hub_id: str) -> str:
    return f"{TOPIC_ROOT}/{hub_id}/config"


def topic_commands(hub_id: str) -> str:
    return f"{TOPIC_ROOT}/{hub_id}/commands"


def topic_receipts(hub_id: str) -> str:
    """Where ingest tells a hub what became of each reading it sent (`Receipt`)."""
    return f"{TOPIC_ROOT}/{hub_id}/receipts"


def topic_results(hub_id: str) -> str:
    """Where a hub reports what became of each command it received (`CommandResult`)."""
    return f"{TOPIC_ROOT}/{hub_id}/results"


# Subscriptions of the ingest tier (one level wildcard for the hub id).
SUBSCRIBE_READINGS = f"{TOPIC_ROOT}/+/readings"
SUBSCRIBE_STATUS = f"{TOPIC_ROOT}/+/status"
SUBSCRIBE_RESULTS = f"{TOPIC_ROOT}/+/results"


TOPIC_KINDS = ("readings", "status", "config", "commands", "receipts", "results")


class TopicError(ValueError):
    """A topic that is not one of the contract's."""


def parse_topic(topic: str) -> tuple[str, str]:
    """Split a contract topic into (hub_id, kind); kind is one of `TOPIC_KINDS`."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or parts[1] not in TOPIC_KINDS:
        raise TopicError(f"topic {topic!r} is not <hub_id>/<{'|'.join(TOPIC_KINDS)}>")
    if not _HUB_ID_RE.match(parts[0]):
        raise TopicError(f"topic {topic!r} has an invalid hub id")
    return parts[0], parts[1]


#: The window of timestamps a payload may carry, in UTC. From 1970 (a hub without a
#: real-time clock boots at the epoch until NTP answers; devices reset to 2000) to the
#: end of 2100 (a badly set clock). Outside it a time is an error, and near the limits
#: of `datetime` it could not even be converted to UTC (year 9999 at -01:00).
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2101, 1, 1, tzinfo=UTC)  # exclusive


# Checked by pydantic-core itself (no Python call per timestamp: two per reading), and
# without converting to UTC first, so year 9999 at -01:00 is simply too late.
AwareDatetime = Annotated[pydantic.AwareDatetime, Field(ge=EARLIEST_TIMESTAMP, lt=LATEST_TIMESTAMP)]
HubId = Annotated[str, Field(pattern=HUB_ID_PATTERN)]
HexBytes = Annotated[str, Field(pattern=r"^([0-9a-f]{2}){1,512}$")]
IdempotencyKey = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, Field(max_length=128)]


class _Strict(BaseModel):
    """A wire model: unknown fields are rejected, and nothing is coerced (pydantic strict
    mode): a string, a boolean or a float where an integer is due, a string or a boolean
    where a number is due, a number where a boolean or a string is due, a number for a
    time: each rejects the payload. JSON has one number type, so an integer is a valid
    number (120 for 120.0), but an integral float is not an integer (120.0 for 120).
    Payloads are validated from JSON (`model_validate_json`), where enum values and ISO
    8601 times are strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("schema_version", mode="before", check_fields=False)
    @classmethod
    def _integer_version(cls, value: object) -> object:
        # A Literal is matched by equality even in strict mode: true and 1.0 equal 1.
        if type(value) is not int:
            raise ValueError(f"schema_version must be an integer, not {type(value).__name__}")
        return value


class MeasurementType(enum.StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    BODY_WEIGHT = "body_weight"
    PULSE_OXIMETRY = "pulse_oximetry"
    GLUCOSE = "glucose"
    MEDICATION_EVENT = "medication_event"


class ClockSource(enum.StrEnum):
    """How the measurement time of a reading was established (clock trust)."""

    #: The hub wrote Current Time on this connection; the device time is trusted as is.
    SET_BY_HUB = "set_by_hub"
    #: The device clock could not be set; its offset to the hub clock was measured and applied.
    OFFSET_MEASURED = "offset_measured"
    #: The reading carried no usable device time; the hub's receive time is used.
    NO_DEVICE_TIME = "no_device_time"


class DeviceIdentity(_Strict):
    """Who produced a reading: the radio address plus Device Information, where read."""

    address: Annotated[str, Field(pattern=r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")]
    manufacturer: ShortText | None = None
    model: ShortText | None = None
    serial: ShortText | None = None
    firmware: ShortText | None = None

    @property
    def stable_id(self) -> str:
        """The identity a device keeps across hubs and resets: serial if known, else address."""
        if self.serial:
            return f"{self.manufacturer or ''}|{self.model or ''}|{self.serial}"
        return self.address


class Quantity(_Strict):
    """One value of a measurement, coded with LOINC and a UCUM unit.

    `value` is None when the device reported a special value (NaN, NRes, ±INF)
    for this field: it is missing, never a number.
    """

    name: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    loinc: Annotated[str, Field(pattern=r"^[0-9]{1,7}-[0-9]$")]
    value: Annotated[float, Field(allow_inf_nan=False)] | None
    unit: Annotated[str, Field(max_length=16)]


class DeviceEvent(_Strict):
    """An event a device reports instead of a measured value (e.g. a medication robot)."""

    #: e.g. dose_due, dispensed, taken, late, missed, refill_low, jam, device_error,
    #: tamper, low_battery (see docs/dispenser-gatt.md)
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,31}$")]
    dose_id: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    slot: Annotated[int, Field(ge=0, le=0xFF)] | None = None
    #: Care staff should act (missed dose locked away, jam, device error, tamper).
    needs_staff_attention: bool = False


#: A 16-bit SIG characteristic ("2A35") or a full 128-bit UUID (our dispenser service).
CharacteristicId = Annotated[
    str,
    Field(pattern=r"^([0-9A-F]{4}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"),
]


class ClockTrust(_Strict):
    source: ClockSource
    #: Seconds added to the device time to obtain the measurement time (0 when set by hub).
    offset_s: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    #: Whether the hub's own clock was NTP-synchronised when it received the reading.
    hub_clock_synced: bool


class Reading(_Strict):
    """One measurement as the hub received it from a device."""

    idempotency_key: IdempotencyKey
    device: DeviceIdentity
    measurement_type: MeasurementType
    characteristic: CharacteristicId
    #: Measured values; empty only for an event (`event` set).
    values: Annotated[list[Quantity], Field(max_length=16)]
    #: Named status flags reported by the device (e.g. "irregular_pulse").
    status: Annotated[list[Annotated[str, Field(max_length=48)]], Field(max_length=32)] = []
    #: The time in the device's own clock, as it sent it (naive: devices have no zone).
    device_time: datetime | None
    hub_received_at: AwareDatetime
    #: The best estimate of when the measurement was taken (UTC), see `clock`.
    measured_at: AwareDatetime
    clock: ClockTrust
    raw_hex: HexBytes
    #: The device's own record number (glucose meters, dispensers), where it has one.
    device_sequence: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] | None = None
    event: DeviceEvent | None = None

    @model_validator(mode="after")
    def _values_or_event(self) -> Reading:
        if self.measurement_type == MeasurementType.MEDICATION_EVENT:
            if self.event is None:
                raise ValueError("a medication_event reading must carry its event")
        elif self.event is not None or not self.values:
            raise ValueError(f"a {self.measurement_type} reading carries values and no event")
        return self


class ReadingBatch(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/readings`: one or more readings from one hub."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    hub_id: HubId
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]

    @model_validator(mode="after")
    def _unique_keys(self) -> ReadingBatch:
        keys = [r.idempotency_key for r in self.readings]
        if len(set(keys)) != len(keys):
            raise ValueError("a batch must not repeat an idempotency key")
        return self


class DeviceProfile(enum.StrEnum):
    """Which driver a hub runs for a device."""

    BLOOD_PRESSURE = "blood_pressure"
    WEIGHT_SCALE = "weight_scale"
    PULSE_OXIMETER = "pulse_oximeter"
    GLUCOSE = "glucose"
    DISPENSER = "dispenser"


Address = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]


class AllowedDevice(_Strict):
    """A device on a hub's allow-list; anything else that advertises is ignored."""

    address: Address
    profile: DeviceProfile
    #: Pair (Just Works) before reading: many cuffs only indicate to a bonded central.
    bond: bool = False
    #: The principal (tenant) the device is assigned to; the backend attributes readings.
    principal: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("address")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


#: A campaign's id (a UUID, canonical lower-case text).
CampaignId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
#: A version as a release names it ("1.4.0", "2026.12.1-rc1").
VersionText = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")]
#: A file name in the update repository (a TUF target name): no separators but "/".
TargetName = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._+/-]{0,254}$")]


class DesiredSoftware(_Strict):
    """The hub software a hub should run (a rollout campaign's desired state)."""

    version: VersionText
    #: The bundle's target name in the update repository (`hemhub-hub-<version>.tar`).
    target: TargetName
    campaign_id: CampaignId


class DesiredFirmware(_Strict):
    """The firmware one of the hub's devices should run (a rollout campaign's desired state)."""

    address: Address
    version: VersionText
    #: The signed image's target name in the update repository.
    target: TargetName
    campaign_id: CampaignId

    @field_validator("address")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class UpdateState(enum.StrEnum):
    """Where an update of the hub's software or of a device's firmware stands."""

    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    #: It did not install; the running version is unchanged (`reason`).
    FAILED = "failed"
    #: It installed but did not confirm: the hub (device) went back to the previous
    #: slot (image) (`reason`).
    REVERTED = "reverted"


class UpdateProgress(_Strict):
    """How the update towards a desired version goes, as the hub reports it."""

    campaign_id: CampaignId | None = None
    version: VersionText
    state: UpdateState
    #: Of the download (downloading).
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    #: A short code and text: why it failed or reverted (required there).
    reason: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _reason_when_failed(self) -> UpdateProgress:
        if self.state in (UpdateState.FAILED, UpdateState.REVERTED) and self.reason is None:
            raise ValueError(f"a {self.state} update must say why (reason)")
        return self


class HubConfig(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/config` (retained): what the hub may talk to.

    The hub caches the newest version it received on disk and works from it after a
    reboot with no network; an older version never replaces a newer one.
    """

    schema_version: Literal[1] = 1
    hub_id: HubId
    version: Annotated[int, Field(ge=1)]
    issued_at: AwareDatetime
    devices: Annotated[list[AllowedDevice], Field(max_length=64)] = []
    #: The hub software it should run (a rollout); None: keep what runs.
    software: DesiredSoftware | None = None
    #: The firmware its devices should run (a rollout), one entry per device at most.
    #: None rather than empty, so that a configuration without a rollout stays readable
    #: by hubs from before rollouts (they reject unknown fields; the hub link leaves
    #: None out).
    firmware: Annotated[list[DesiredFirmware], Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _unique_addresses(self) -> HubConfig:
        addresses = [d.address for d in self.devices]
        if len(set(addresses)) != len(addresses):
            raise ValueError("a device address is listed twice")
        targets = [f.address for f in self.firmware or []]
        if len(set(targets)) != len(targets):
            raise ValueError("a device's firmware is listed twice")
        return self


class DeviceHealth(_Strict):
    """What a hub knows of one allowed device: why data may be missing."""

    address: Address
    profile: DeviceProfile
    last_seen_at: AwareDatetime | None = None
    rssi: int | None = None
    last_reading_at: AwareDatetime | None = None
    readings: int = 0
    battery_level: Annotated[int, Field(ge=0, le=100)] | None = None
    firmware: ShortText | None = None
    sessions_failed: int = 0
    consecutive_failures: int = 0
    last_error: Annotated[str, Field(max_length=512)] | None = None
    #: The firmware update of this device under way or last finished (a rollout).
    firmware_update: UpdateProgress | None = None


class HubAlarm(enum.StrEnum):
    OUTBOX_NEAR_FULL = "outbox_near_full"
    OUTBOX_FULL = "outbox_full"
    ADAPTER_UNRESPONSIVE = "adapter_unresponsive"
    CLOCK_NOT_SYNCED = "clock_not_synced"
    DISK_LOW = "disk_low"


class HubStatus(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/status` (retained; also the last will)."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    hub_id: HubId
    online: bool
    at: AwareDatetime | None = None
    software_version: ShortText | None = None
    uptime_s: float | None = None
    #: Readings waiting for the broker's PUBACK (the oldest one's age below).
    outbox_depth: int | None = None
    outbox_oldest_age_s: float | None = None
    outbox_bytes: int | None = None
    last_publish_at: AwareDatetime | None = None
    config_version: int | None = None
    clock_synced: bool | None = None
    adapter: Literal["ok", "unresponsive", "off"] | None = None
    disk_free_bytes: int | None = None
    memory_rss_bytes: int | None = None
    cpu_temperature_c: float | None = None
    alarms: list[HubAlarm] = []
    devices: Annotated[list[DeviceHealth], Field(max_length=64)] = []
    #: Failed passes of the hub's publishing loop since it started (say, the disk is full
    #: and delivered entries cannot be removed), and the last one's reason.
    publish_errors: int | None = None
    last_publish_error: Annotated[str, Field(max_length=512)] | None = None
    #: Readings the broker acknowledged whose receipt from ingest has not come yet.
    outbox_awaiting_receipt: int | None = None
    #: Readings ingest rejected (a `Receipt`): kept on the hub for inspection, never resent.
    outbox_rejected: int | None = None
    #: The hub software update under way or last finished (a rollout).
    software_update: UpdateProgress | None = None


#: Keys one receipt names at most; ingest sends more in several receipts.
MAX_KEYS_PER_RECEIPT = 5000
#: A short reason code: never internal detail (exception text, SQL) on the way to a hub.
ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,31}$")]


class RejectedKey(_Strict):
    idempotency_key: IdempotencyKey
    #: e.g. invalid, hub_mismatch, unsupported_schema, storage_failed (docs/wire-contract.md)
    reason: ReasonCode


class Receipt(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/receipts` (QoS 1, from ingest, schema v2).

    Sent after the transaction that stored the readings committed: the hub forgets a
    stored or duplicate key, and keeps a rejected one for inspection, never resending it.
    """

    schema_version: Literal[2] = 2
    hub_id: HubId
    at: AwareDatetime
    stored: Annotated[list[IdempotencyKey], Field(max_length=MAX_KEYS_PER_RECEIPT)] = []
    duplicate: Annotated[list[IdempotencyKey], Field(max_length=MAX_KEYS_PER_RECEIPT)] = []
    rejected: Annotated[list[RejectedKey], Field(max_length=MAX_KEYS_PER_RECEIPT)] = []


#: A command's id: a UUID in its canonical lower-case text form.
CommandId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class CommandKind(enum.StrEnum):
    """What the backend asks a hub to do (docs/gateway.md, "Commands")."""

    #: Erase what a device stores where its profile allows, then remove its bond.
    WIPE_DEVICE = "wipe_device"
    #: Remove the device's bond and everything the hub keeps of it; the device is untouched.
    FORGET_DEVICE = "forget_device"
    #: Erase the hub: outbox, bonds, cached configuration, command memory, credentials.
    WIPE_HUB = "wipe_hub"


class HubCommand(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/commands` (QoS 1, never retained).

    A hub carries out a command id once: a command delivered again (the broker's QoS 1
    redelivery, the backend's hub link resending) is answered with the first result.
    """

    schema_version: Literal[1] = 1
    hub_id: HubId
    command_id: CommandId
    issued_at: AwareDatetime
    kind: CommandKind
    #: The device (wipe_device, forget_device); absent for wipe_hub.
    address: Address | None = None
    #: How to wipe it (wipe_device): the profile the device was used with.
    profile: DeviceProfile | None = None

    @field_validator("address")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()

    @model_validator(mode="after")
    def _fields_of_kind(self) -> HubCommand:
        if self.kind == CommandKind.WIPE_HUB:
            if self.address is not None or self.profile is not None:
                raise ValueError("wipe_hub names no device (no address, no profile)")
        elif self.address is None:
            raise ValueError(f"{self.kind} needs the device's address")
        elif self.kind == CommandKind.WIPE_DEVICE and self.profile is None:
            raise ValueError("wipe_device needs the device's profile")
        elif self.kind == CommandKind.FORGET_DEVICE and self.profile is not None:
            raise ValueError("forget_device takes no profile")
        return self


class CommandOutcome(enum.StrEnum):
    #: Done: the device's stored records are erased (wipe_device), or the hub's knowledge
    #: of the device (forget_device), or the hub itself (wipe_hub).
    WIPED = "wiped"
    #: The device offers no way to erase what it stores; `reason` says why. The bond is
    #: still removed (`bond_removed`).
    UNSUPPORTED = "unsupported"
    #: The hub tried and could not; `reason` says why (device not found, refused, ...).
    FAILED = "failed"


class CommandResult(_Strict):
    """Payload of `hemhub/v1/hubs/{hub_id}/results` (QoS 1, from the hub, to ingest)."""

    schema_version: Literal[1] = 1
    hub_id: HubId
    command_id: CommandId
    kind: CommandKind
    outcome: CommandOutcome
    #: Why, for unsupported and failed (required there); a note for wiped.
    reason: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    address: Address | None = None
    #: Stored records the device reported before the wipe (glucose meters), where known.
    records_before: Annotated[int, Field(ge=0)] | None = None
    #: Whether the hub removed the device's bond (wipe_device, forget_device).
    bond_removed: bool | None = None
    finished_at: AwareDatetime

    @model_validator(mode="after")
    def _reason_when_not_wiped(self) -> CommandResult:
        if self.outcome != CommandOutcome.WIPED and self.reason is None:
            raise ValueError(f"a {self.outcome} result must say why (reason)")
        return self


def json_schema() -> dict[str, object]:
    """The JSON Schema of every payload of the contract, for `docs/`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"hemhub wire contract v{SCHEMA_VERSION}",
        "topics": {
            "readings": topic_readings("{hub_id}"),
            "status": topic_status("{hub_id}"),
            "config": topic_config("{hub_id}"),
            "commands": topic_commands("{hub_id}"),
            "receipts": topic_receipts("{hub_id}"),
            "results": topic_results("{hub_id}"),
        },
        "payloads": {
            "ReadingBatch": ReadingBatch.model_json_schema(),
            "HubStatus": HubStatus.model_json_schema(),
            "HubConfig": HubConfig.model_json_schema(),
            "Receipt": Receipt.model_json_schema(),
            "HubCommand": HubCommand.model_json_schema(),
            "CommandResult": CommandResult.model_json_schema(),
        },
    }
