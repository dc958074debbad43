"""What a simulated device keeps through a power cut (its flash), in a file.

Real devices keep their stored readings, their record log and their record numbers when
the hub (or its power) dies; a simulated device lives in the hub's process, so it writes
them to the simulation's state directory and reads them back at start. Every write is
durable and atomic: a temporary file, fsync, rename over the old file, fsync of the
directory. A kill -9 at any moment leaves the old memory or the new one, never a torn
file and never an acknowledged change that a power cut could still undo.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device_drivers.simulation.glucose_meter import RacpPeripheral

#: How many readings a simulated device remembers (real cuffs keep 60 to 100).
DEVICE_MEMORY = 100


def write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text`: written, synced, renamed, the directory synced."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DeviceMemory:
    """One device's memory: the raw readings it produced and still holds (`raws`), how
    often its resident used it (`uses`), and its own state (`device`: a record log with
    its numbering, whatever the peripheral's `memory_state()` returns).

    `state_of`, when set, is asked for the device's state on every save, so that one
    atomic write holds all of it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            saved = {}
        except json.JSONDecodeError as exc:  # not written by write_durably: never guess
            raise ValueError(f"{path} is not a simulated device's memory: {exc}") from exc
        self.raws: list[str] = saved.get("raws", [])
        self.uses: int = saved.get("uses", 0)
        self.device: dict[str, Any] | None = saved.get("device")
        self.state_of: Callable[[], dict[str, Any]] | None = None

    def save(self) -> None:
        if self.state_of is not None:
            self.device = self.state_of()
        saved: dict[str, Any] = {"raws": self.raws, "uses": self.uses}
        if self.device is not None:
            saved["device"] = self.device
        write_durably(self.path, json.dumps(saved))

    def attach(self, peripheral: RacpPeripheral) -> None:
        """Make this the flash of a device with a record log: its log as saved (when
        there is one) is restored, and every change, erasures included, is saved."""
        if self.device is not None:
            peripheral.restore_memory(self.device)
        self.state_of = peripheral.memory_state
        peripheral.on_memory_changed = self.save
        peripheral.on_records_erased = self.erased

    def erased(self, raws: list[bytes]) -> None:
        """The device erased these readings (a RACP delete, a data reset): it no longer
        holds them. Saved with the device's next `save()` (the caller's, right after)."""
        gone = {raw.hex() for raw in raws}
        self.raws = [r for r in self.raws if r not in gone]

    def remember(self, raw_hex: str) -> None:
        self.raws = [*self.raws, raw_hex][-DEVICE_MEMORY:]
        self.save()
