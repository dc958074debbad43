"""A simulated home: one radio, the resident's devices, and the resident using them.

Used by `hemhub demo` and by `hemhub gateway --simulate SCENARIO` (the real gateway
process against simulated peripherals, so it can be killed, restarted and cut off like
a hub). Every measurement a device produces is appended to `simulated-readings.jsonl`.
A device's memory of stored readings is kept in a file, like a real device's flash
(`memory.DeviceMemory`, one file per device in the data directory, written durably), so
that a killed and restarted process does not lose what the device still holds: a cuff's,
scale's or oximeter's stored readings; a glucose meter's or dispenser's record log with
its sequence numbers and the rest of its state (`RacpPeripheral.memory_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.dispenser import SimulatedDispenser
from device_drivers.simulation.firmware_images import application_payload, load_key, sign_image
from device_drivers.simulation.glucose_meter import RacpPeripheral, SimulatedGlucoseMeter
from device_drivers.simulation.mcuboot import SimulatedMCUboot
from device_drivers.simulation.memory import DeviceMemory
from device_drivers.simulation.oximeter import SimulatedOximeter
from device_drivers.simulation.peripheral import SimulatedPeripheral, StoredRecordsPeripheral
from device_drivers.simulation.radio import SimulatedRadio
from device_drivers.simulation.scale import SimulatedScale
from hemhub.contract import Address, AllowedDevice, DeviceIdentity, DeviceProfile

log = logging.getLogger(__name__)

_PERIPHERALS: dict[DeviceProfile, type[SimulatedPeripheral]] = {
    DeviceProfile.BLOOD_PRESSURE: SimulatedCuff,
    DeviceProfile.WEIGHT_SCALE: SimulatedScale,
    DeviceProfile.PULSE_OXIMETER: SimulatedOximeter,
    DeviceProfile.GLUCOSE: SimulatedGlucoseMeter,
    DeviceProfile.DISPENSER: SimulatedDispenser,
}


class SimulatedFirmware(BaseModel):
    """A device with MCUboot and an SMP server (docs/firmware-devices.md)."""

    model_config = ConfigDict(extra="forbid")

    #: The vendor's imgtool signing key (PEM): the factory image is signed with it and the
    #: bootloader accepts only images signed with it.
    signing_key: Path
    #: The factory image's version.
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "1.0.0"


class SimulatedDevice(BaseModel):
    """One device of a simulated home and how its resident uses it."""

    model_config = ConfigDict(extra="forbid")

    address: Address
    profile: DeviceProfile
    serial: Annotated[str, Field(min_length=1, max_length=32)]
    #: The resident's physiology (see each peripheral: e.g. hypertensive, heart_failure,
    #: copd, diabetic, skips_doses); None takes the device's default.
    scenario: str | None = None
    seed: int = 0
    #: Seconds before the first use, and mean seconds between uses.
    first_after_s: Annotated[float, Field(ge=0)] = 2.0
    every_s: Annotated[float, Field(gt=0)] = 30.0
    #: Stop using the device after this many uses (None: never stop).
    max_uses: Annotated[int, Field(ge=0)] | None = None
    #: Fault switches and options passed to the peripheral (bond_required, replay_backlog,
    #: clock_writable, clock_unset, disconnect_mid_transfer, ...).
    faults: dict[str, Any] = {}
    #: Whether the hub should pair before reading (the allow-list's `bond`).
    bond: bool = False
    #: MCUboot and an SMP server on the device (None: no firmware updates).
    firmware: SimulatedFirmware | None = None

    def allowed(self) -> AllowedDevice:
        return AllowedDevice(address=self.address, profile=self.profile, bond=self.bond)

    def identity(self) -> DeviceIdentity:
        """Who the device says it is (Device Information), for registering it."""
        cls: Any = _PERIPHERALS[self.profile]
        return DeviceIdentity(
            address=self.address,
            manufacturer=self.faults.get("manufacturer", cls.MANUFACTURER),
            model=self.faults.get("model", cls.MODEL),
            serial=self.serial,
        )


class SimulationScenario(BaseModel):
    """A `--simulate` scenario file (TOML or JSON): `[[devices]]` tables."""

    model_config = ConfigDict(extra="forbid")

    devices: list[SimulatedDevice]

    @classmethod
    def load(cls, path: Path) -> SimulationScenario:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.model_validate(data)


class ProducedLog:
    """Appends what the simulated devices measured, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class SimulatedHome:
    """The devices of one home on `radio`, used by their resident until `stop()`."""

    def __init__(
        self,
        radio: SimulatedRadio,
        scenario: SimulationScenario,
        data_dir: Path,
        *,
        produced: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.radio = radio
        self.scenario = scenario
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._own_log = produced is None
        self._log = produced or ProducedLog(data_dir / "simulated-readings.jsonl")
        self.devices: dict[str, SimulatedPeripheral] = {}
        self._memories: dict[str, DeviceMemory] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.sessions = 0

    def allow_list(self) -> list[AllowedDevice]:
        return [d.allowed() for d in self.scenario.devices]

    async def start(self) -> None:
        self._reconcile_log()
        for spec in self.scenario.devices:
            peripheral = self._make(spec)
            if isinstance(peripheral, RacpPeripheral):
                # Its log as it was when the process died, and saved on every change.
                self._memory(spec).attach(peripheral)
            await peripheral.start()
            peripheral.device.on("connection", lambda _c, a=spec.address: self._connected(a))
            if isinstance(peripheral, StoredRecordsPeripheral):
                for raw_hex in self._memory(spec).raws:  # what it held when the process died
                    await peripheral.store_raw(bytes.fromhex(raw_hex))
            self.devices[spec.address] = peripheral
            self._tasks.append(asyncio.create_task(self._use(spec, peripheral)))

    def _reconcile_log(self) -> None:
        """A process killed between a device storing a reading and the log line leaves a
        reading the device holds but the log lacks: log it now."""
        if not self._own_log:
            return
        path = self.data_dir / "simulated-readings.jsonl"
        text = path.read_text() if path.exists() else ""
        logged = {json.loads(line)["raw_hex"] for line in text.splitlines() if line}
        for spec in self.scenario.devices:
            memory = self._memory(spec)
            held = {
                raw_hex: {"address": spec.address, "raw_hex": raw_hex} for raw_hex in memory.raws
            }
            # A record log saved before the process died, its record not yet remembered.
            for saved in (memory.device or {}).get("records", []):
                held[saved["raw_hex"]] = {**saved["record"], "raw_hex": saved["raw_hex"]}
            for raw_hex, record in held.items():
                if raw_hex not in logged:
                    self._log({**record, "recovered": True})

    def _memory(self, spec: SimulatedDevice) -> DeviceMemory:
        memory = self._memories.get(spec.address)
        if memory is None:
            path = self.data_dir / f"device-{spec.address.replace(':', '')}.json"
            memory = self._memories[spec.address] = DeviceMemory(path)
        return memory

    def _connected(self, address: str) -> None:
        """Count a session (a central connected): fault tests read this file."""
        self.sessions += 1
        with (self.data_dir / "simulated-sessions.log").open("a") as f:
            f.write(address + "\n")

    def _make(self, spec: SimulatedDevice) -> SimulatedPeripheral:
        options: dict[str, Any] = dict(spec.faults)
        if spec.scenario is not None:
            options["scenario"] = spec.scenario
        memory = self._memory(spec)
        cls: Any = _PERIPHERALS[spec.profile]
        if spec.firmware is not None:
            key = load_key(spec.firmware.signing_key)
            model = str(options.get("model", cls.MODEL))
            version = spec.firmware.version
            factory = sign_image(key, version, application_payload(model, version))
            # Its flash (slots, flags) survives a kill like its memory of readings.
            flash = self.data_dir / f"firmware-{spec.address.replace(':', '')}.json"
            options["mcuboot"] = SimulatedMCUboot(key, factory, flash_path=flash)

        def produced(record: dict[str, Any]) -> None:
            memory.remember(record["raw_hex"])  # held by the device before it is logged
            self._log(record)

        peripheral: SimulatedPeripheral = cls(
            self.radio,
            address=spec.address,
            serial=spec.serial,
            seed=spec.seed,
            on_produced=produced,
            **options,
        )
        return peripheral

    async def _use(self, spec: SimulatedDevice, device: SimulatedPeripheral) -> None:
        rng = random.Random(f"{spec.address}/{spec.seed}")
        memory = self._memory(spec)
        delay = spec.first_after_s
        while spec.max_uses is None or memory.uses < spec.max_uses:
            await asyncio.sleep(delay)
            memory.uses += 1  # counted first: a use is never repeated after a power cut
            memory.save()
            try:
                if isinstance(device, SimulatedDispenser):
                    await device.run_day()
                else:
                    await device.measure()  # type: ignore[attr-defined]
            except Exception:  # a simulated resident's mistake must not end the home
                log.exception("simulated %s %s failed to measure", spec.profile, spec.address)
            delay = rng.uniform(0.5, 1.5) * spec.every_s

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                await device.stop()
        if self._own_log and isinstance(self._log, ProducedLog):
            self._log.close()
