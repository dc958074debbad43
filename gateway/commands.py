"""The hub's memory of the backend's commands: each command id is carried out once.

No I/O beyond its own file. `receive()` decides what a `.../commands` message asks for
(run it, answer again with the first result, or ignore it, saying why) and records the
command durably before the broker's acknowledgement (the caller returns to paho after
it), so a hub that dies mid-command runs it again when it starts (`unfinished()`): every
command is safe to repeat, and runs at most once to a result. A result is kept until the
broker acknowledged it (`unreported()`), and is published again on every connect until
then; ingest records the first and ignores the rest.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from gateway.provisioning import write_atomic
from hemhub.contract import CommandKind, CommandOutcome, CommandResult, HubCommand

log = logging.getLogger(__name__)

#: Commands remembered (the oldest finished and reported ones are dropped beyond it).
MAX_REMEMBERED = 1000


@dataclass(frozen=True)
class Run:
    """Carry the command out (first delivery, or unfinished before a restart)."""

    command: HubCommand


@dataclass(frozen=True)
class Repeat:
    """Already done: publish this result again (the backend may have missed it)."""

    result: CommandResult


@dataclass(frozen=True)
class Ignore:
    reason: str


Decision = Run | Repeat | Ignore


class CommandBook:
    """Commands by id with their result and whether the broker acknowledged it, in
    `path` (JSON, replaced atomically). Thread-safe: `receive` runs on paho's thread."""

    def __init__(self, path: Path, hub_id: str) -> None:
        self.path = path
        self.hub_id = hub_id
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = self._load()

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            saved = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            log.error("ignoring damaged command memory %s: %s", self.path, exc)
            return {}
        if not isinstance(saved, dict):
            log.error("ignoring damaged command memory %s", self.path)
            return {}
        return {str(k): v for k, v in saved.items() if isinstance(v, dict)}

    def _save(self) -> None:
        if len(self._entries) > MAX_REMEMBERED:
            done = [k for k, v in self._entries.items() if v.get("reported")]
            for key in done[: len(self._entries) - MAX_REMEMBERED]:
                del self._entries[key]
        write_atomic(self.path, json.dumps(self._entries).encode())

    def receive(self, payload: bytes) -> Decision:
        """What to do with a message on `.../commands`; a command to run is recorded first."""
        try:
            command = HubCommand.model_validate_json(payload)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            shown = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]
            )
            return Ignore(f"invalid command: {shown}"[:512])
        if command.hub_id != self.hub_id:
            return Ignore(f"command {command.command_id} is for hub {command.hub_id!r}")
        with self._lock:
            entry = self._entries.get(command.command_id)
            if entry is not None:
                result = entry.get("result")
                if result is None:
                    return Ignore(f"command {command.command_id} is already running")
                return Repeat(CommandResult.model_validate_json(json.dumps(result)))
            self._entries[command.command_id] = {
                "command": command.model_dump(mode="json", exclude_none=True),
                "result": None,
                "reported": False,
            }
            self._save()
        return Run(command)

    def finish(
        self,
        command: HubCommand,
        outcome: CommandOutcome,
        reason: str | None,
        *,
        records_before: int | None = None,
        bond_removed: bool | None = None,
    ) -> CommandResult:
        """Record the result of a command (durably, before it is published)."""
        result = CommandResult(
            hub_id=self.hub_id,
            command_id=command.command_id,
            kind=command.kind,
            outcome=outcome,
            reason=None if reason is None else reason[:512],
            address=command.address,
            records_before=records_before,
            bond_removed=bond_removed,
            finished_at=datetime.now(UTC),
        )
        with self._lock:
            self._entries[command.command_id] = {
                "command": command.model_dump(mode="json", exclude_none=True),
                "result": result.model_dump(mode="json", exclude_none=True),
                "reported": False,
            }
            self._save()
        return result

    def reported(self, command_id: str) -> None:
        """The broker acknowledged the result of `command_id`."""
        with self._lock:
            entry = self._entries.get(command_id)
            if entry is not None and not entry.get("reported"):
                entry["reported"] = True
                self._save()

    def unreported(self) -> list[CommandResult]:
        """Results the broker has not acknowledged yet, oldest first."""
        with self._lock:
            return [
                CommandResult.model_validate_json(json.dumps(e["result"]))
                for e in self._entries.values()
                if e.get("result") is not None and not e.get("reported")
            ]

    def unfinished(self) -> list[HubCommand]:
        """Commands received but without a result (the hub stopped while running them)."""
        with self._lock:
            return [
                HubCommand.model_validate_json(json.dumps(e["command"]))
                for e in self._entries.values()
                if e.get("result") is None
            ]

    def erase(self) -> None:
        """Forget every command (a hub wipe)."""
        with self._lock:
            self._entries = {}
            self.path.unlink(missing_ok=True)


def is_device_command(command: HubCommand) -> bool:
    return command.kind in (CommandKind.WIPE_DEVICE, CommandKind.FORGET_DEVICE)
