"""A simulated MCUboot: two image slots, signature check, swap in test mode, revert.

Sans-I/O: the state of one device's flash and bootloader, no radio. The simulated SMP server
(`smp_server.py`) writes uploads into the secondary slot and marks images; `reset()` is the
device rebooting through the bootloader. The signature check is imgtool's own `verify`
(MCUboot's image tool), against the public key built into the bootloader.

Life of an update, as MCUboot's swap mode does it:
- the application runs from the primary slot (slot 0), confirmed;
- an upload fills the secondary slot (slot 1); "test" marks it pending;
- on reset the bootloader verifies the secondary image (signature and hash TLVs): a bad one
  is erased and the old image boots again; a good one is swapped into the primary slot and
  boots unconfirmed (the old image now sits in the secondary slot);
- the running image is confirmed ("confirm") and stays; a reset before that swaps the old
  image back (revert). A new image that fails to boot (`fails_to_boot`) resets at once and
  is reverted the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from device_drivers.mcuboot_image import IMAGE_MAGIC, ImageInfo, inspect_image, read_image
from device_drivers.simulation.memory import write_durably

logger = logging.getLogger(__name__)


class BootOutcome(Enum):
    """What one reset through the bootloader did."""

    #: Nothing pending: the primary image booted again.
    UNCHANGED = "unchanged"
    #: The pending image was verified, swapped in, and runs unconfirmed (test).
    SWAPPED = "swapped"
    #: The pending image failed verification: erased, the old image runs.
    REJECTED = "rejected"
    #: The running test image was not confirmed (or did not boot): the old image is back.
    REVERTED = "reverted"


@dataclass
class Slot:
    """One image in a slot."""

    data: bytes
    info: ImageInfo
    confirmed: bool = False

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()


class SimulatedMCUboot:
    """The bootloader and the two slots of one simulated device.

    Args:
        key: the public key built into the bootloader (an imgtool key object, e.g. from
            `imgtool.keys.load(path)`); images not signed with its private half are refused.
        image: the signed image the device runs from the factory (confirmed).
        slot_size: bytes of each slot; a larger upload is refused.
        flash_path: a file that keeps the slots and flags through a kill of the simulation
            (written durably on every change, read back at start); None: in memory only.
    """

    def __init__(
        self,
        key: Any,
        image: bytes,
        *,
        slot_size: int = 0x40000,
        flash_path: Path | None = None,
    ) -> None:
        self.key = key
        self.slot_size = slot_size
        self.flash_path = flash_path
        info = inspect_image(image, key)
        if not info.valid:
            raise ValueError(f"the factory image does not verify: {info.reason}")
        self.primary = Slot(bytes(image), info, confirmed=True)
        self.secondary: Slot | None = None
        #: The secondary image is marked for test (swap at the next reset).
        self.pending = False
        #: The primary image was swapped in for test and is not confirmed yet.
        self.testing = False
        if flash_path is not None and flash_path.exists():
            self._load(flash_path)
        #: Fault switch: the next image swapped in crashes at boot (and is reverted).
        self.fails_to_boot = False
        #: Resets through the bootloader, and what each did (last one last).
        self.boots: list[BootOutcome] = []
        self.last_rejection = ""

    # --- what the application sees ----------------------------------------------------

    @property
    def running_version(self) -> str:
        return self.primary.info.version

    @property
    def running_hash(self) -> bytes:
        return self.primary.info.hash

    def write_secondary(self, data: bytes) -> None:
        """An upload finished: the secondary slot now holds `data` (not pending)."""
        if len(data) > self.slot_size:
            raise ValueError(f"image of {len(data)} bytes exceeds the slot ({self.slot_size})")
        # The application reads the header and TLVs without checking them, as Zephyr's
        # image list does; the check is the bootloader's business.
        self.secondary = Slot(bytes(data), read_image(data))
        self.pending = False
        self._save()

    def erase_secondary(self) -> None:
        self.secondary = None
        self.pending = False
        self._save()

    def mark_test(self, image_hash: bytes) -> None:
        """Mark the secondary image with `image_hash` for a test swap at the next reset."""
        if self.secondary is None or self.secondary.info.hash != image_hash:
            raise LookupError("no image with that hash in the secondary slot")
        self.pending = True
        self._save()

    def confirm(self, image_hash: bytes | None = None) -> None:
        """Confirm the running image (the hash, when given, must be the running one's).

        Confirming the secondary image instead marks it pending and permanent, as
        MCUboot does; that is dangerous and the hub never does it.
        """
        if image_hash is None or image_hash == self.primary.info.hash:
            self.primary.confirmed = True
            self.testing = False
            self._save()
            return
        if self.secondary is not None and self.secondary.info.hash == image_hash:
            self.pending = True
            self.secondary.confirmed = True
            self._save()
            return
        raise LookupError("no image with that hash")

    # --- the bootloader ---------------------------------------------------------------

    def reset(self) -> BootOutcome:
        """The device resets through the bootloader; returns what the bootloader did."""
        outcome = self._boot()
        if outcome is BootOutcome.SWAPPED and self.fails_to_boot:
            # The new image crashes before it can confirm itself: the watchdog resets the
            # device and the bootloader reverts the unconfirmed image.
            self.fails_to_boot = False
            logger.info("simulated MCUboot: image %s failed to boot", self.running_version)
            self.boots.append(outcome)
            outcome = self._boot()
        self.boots.append(outcome)
        self._save()
        return outcome

    def _boot(self) -> BootOutcome:
        if self.testing and not self.primary.confirmed:
            return self._revert()
        if not self.pending or self.secondary is None:
            self.pending = False
            return BootOutcome.UNCHANGED
        candidate = self.secondary
        verified = inspect_image(candidate.data, self.key)
        if not verified.valid:
            self.last_rejection = verified.reason or "invalid image"
            logger.info("simulated MCUboot: image rejected (%s)", self.last_rejection)
            self.erase_secondary()
            return BootOutcome.REJECTED
        permanent = candidate.confirmed
        old = self.primary
        self.primary = Slot(candidate.data, verified, confirmed=permanent)
        self.secondary = Slot(old.data, old.info)
        self.pending = False
        self.testing = not permanent
        return BootOutcome.SWAPPED

    def _revert(self) -> BootOutcome:
        assert self.secondary is not None  # a test swap keeps the old image there
        failed = self.primary
        self.primary = Slot(self.secondary.data, self.secondary.info, confirmed=True)
        self.secondary = Slot(failed.data, failed.info)
        self.testing = False
        self.pending = False
        logger.info("simulated MCUboot: reverted to %s", self.running_version)
        return BootOutcome.REVERTED

    # --- flash through a kill ----------------------------------------------------------

    def _save(self) -> None:
        if self.flash_path is None:
            return
        secondary = self.secondary
        state = {
            "primary": self.primary.data.hex(),
            "primary_confirmed": self.primary.confirmed,
            "secondary": secondary.data.hex() if secondary is not None else None,
            "secondary_confirmed": secondary.confirmed if secondary is not None else False,
            "pending": self.pending,
            "testing": self.testing,
        }
        write_durably(self.flash_path, json.dumps(state))

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            primary = bytes.fromhex(state["primary"])
            secondary = state["secondary"]
        except (ValueError, KeyError, TypeError) as exc:  # never guess a flash content
            raise ValueError(f"{path} is not a simulated device's flash: {exc}") from exc
        # What was written to flash was verified when it was swapped in.
        self.primary = Slot(primary, read_image(primary), bool(state["primary_confirmed"]))
        if secondary is not None:
            data = bytes.fromhex(secondary)
            self.secondary = Slot(data, read_image(data), bool(state["secondary_confirmed"]))
        self.pending = bool(state["pending"])
        self.testing = bool(state["testing"])

    # --- the image list ---------------------------------------------------------------

    def image_states(self) -> list[dict[str, Any]]:
        """The image list as Zephyr's SMP server reports it (slot, version, hash, flags)."""
        states: list[dict[str, Any]] = [
            {
                "image": 0,
                "slot": 0,
                "version": self.primary.info.version,
                "hash": self.primary.info.hash,
                "bootable": True,
                "active": True,
                "confirmed": self.primary.confirmed,
                "pending": False,
                "permanent": False,
            }
        ]
        if self.secondary is not None:
            states.append(
                {
                    "image": 0,
                    "slot": 1,
                    "version": self.secondary.info.version,
                    "hash": self.secondary.info.hash,
                    "bootable": True,
                    "active": False,
                    "confirmed": False,
                    "pending": self.pending,
                    "permanent": self.pending and self.secondary.confirmed,
                }
            )
        return states


__all__ = ["IMAGE_MAGIC", "BootOutcome", "SimulatedMCUboot", "Slot"]
