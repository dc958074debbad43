"""A simulated MCUmgr SMP server (image and OS management), sans-I/O.

What Zephyr's SMP server answers, for a `SimulatedMCUboot`: MCUmgr parameters, image list,
image test / confirm, image upload (resumable: a first chunk with the hash of an upload in
progress answers the offset reached, as Zephyr's img_mgmt does), and reset. Frames are
decoded and encoded with the `smp` package (the codec smpclient uses); the BLE side
(`SMPFrameAssembler`, the GATT service in `peripheral.py`) only moves bytes.

Fault switches:
- `corrupt_upload`: one byte of the upload is written wrong to flash: the final chunk's
  answer says the hash does not match (`match: false`) and the image is not kept;
- `drop_upload_at`: the link drops (once) when the upload passes this offset; what was
  written stays, so the next upload of the same image resumes there;
- a battery below `low_battery_level` refuses an upload (busy, "battery low").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import cbor2
from pydantic import ValidationError
from smp import header as smphdr
from smp import image_management as smpimg
from smp import message as smpmsg
from smp import os_management as smpos
from smp.error import MGMT_ERR
from smp.exceptions import SMPMalformed

from device_drivers.mcuboot_image import IMAGE_MAGIC
from device_drivers.simulation.mcuboot import SimulatedMCUboot

logger = logging.getLogger(__name__)

#: The SMP server's reassembly buffer (Zephyr's CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE).
DEFAULT_BUFFER_SIZE = 1024
BATTERY_LOW_REASON = "battery low"

_IMG = smphdr.GroupId.IMAGE_MANAGEMENT
_OS = smphdr.GroupId.OS_MANAGEMENT
_IMG_CMD = smphdr.CommandId.ImageManagement
_OS_CMD = smphdr.CommandId.OSManagement


@dataclass
class SMPReply:
    """What the server does for one request: answer frames, and what follows."""

    frames: list[bytes] = field(default_factory=list)
    #: Reset the device after the answer is sent.
    reset: bool = False
    #: Drop the link now (no answer).
    drop_link: bool = False


class SMPFrameAssembler:
    """Joins GATT writes into whole SMP frames (8-byte header, then `length` bytes)."""

    def __init__(self, limit: int = DEFAULT_BUFFER_SIZE) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add one write; returns the frames it completed. Oversized frames are dropped."""
        self._buffer.extend(data)
        frames: list[bytes] = []
        while len(self._buffer) >= smphdr.Header.SIZE:
            length = int.from_bytes(self._buffer[2:4], "big")
            total = smphdr.Header.SIZE + length
            if total > self.limit:
                logger.warning("SMP frame of %d bytes exceeds the buffer: dropped", total)
                self._buffer.clear()
                break
            if len(self._buffer) < total:
                break
            frames.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
        return frames

    def reset(self) -> None:
        self._buffer.clear()


def error_frame(request: smphdr.Header, rc: MGMT_ERR, reason: str) -> bytes:
    """An SMP version-1 error answer ({"rc", "rsn"}) to `request`."""
    body = cbor2.dumps({"rc": int(rc), "rsn": reason}, canonical=True)
    head = smphdr.Header(
        op=smphdr.OP(int(request.op) + 1),
        version=request.version,
        flags=request.flags,
        length=len(body),
        group_id=request.group_id,
        sequence=request.sequence,
        command_id=request.command_id,
    )
    return bytes(head) + body


class SimulatedSMPServer:
    """The SMP server of one simulated device.

    Args:
        mcuboot: the device's bootloader and slots.
        battery_level: reads the device's battery level (%).
        low_battery_level: below this an upload is refused.
        buffer_size: the reassembly buffer reported in the MCUmgr parameters.
    """

    def __init__(
        self,
        mcuboot: SimulatedMCUboot,
        *,
        battery_level: Callable[[], int],
        low_battery_level: int = 20,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self.mcuboot = mcuboot
        self._battery_level = battery_level
        self.low_battery_level = low_battery_level
        self.buffer_size = buffer_size
        self.corrupt_upload = False
        self.drop_upload_at: int | None = None
        self._data = bytearray()
        self._length = 0
        self._sha: bytes | None = None
        #: Upload requests that resumed an interrupted upload at a non-zero offset.
        self.resumed_at: list[int] = []
        #: Uploads refused because of a low battery.
        self.refused_low_battery = 0

    @property
    def upload_offset(self) -> int:
        return len(self._data)

    def reboot(self) -> None:
        """The device reset: an upload in progress is forgotten (its state is in RAM)."""
        self._data, self._length, self._sha = bytearray(), 0, None

    # --- dispatch ---------------------------------------------------------------------

    def handle(self, frame: bytes) -> SMPReply:
        """Answer one whole request frame."""
        try:
            head = smphdr.Header.loads(frame[: smphdr.Header.SIZE])
        except (ValueError, SMPMalformed) as exc:
            logger.warning("malformed SMP header: %s", exc)
            return SMPReply()
        op, group, command = head.op, head.group_id, head.command_id
        try:
            if group == _OS and command == _OS_CMD.MCUMGR_PARAMETERS and op == smphdr.OP.READ:
                return self._answer(
                    smpos.MCUMgrParametersReadResponse(
                        buf_size=self.buffer_size,
                        buf_count=4,
                        version=head.version,
                        sequence=head.sequence,
                    )
                )
            if group == _OS and command == _OS_CMD.RESET and op == smphdr.OP.WRITE:
                smpos.ResetWriteRequest.loads(frame)
                reply = self._answer(
                    smpos.ResetWriteResponse(version=head.version, sequence=head.sequence)
                )
                reply.reset = True
                return reply
            if group == _IMG and command == _IMG_CMD.STATE and op == smphdr.OP.READ:
                return self._answer(
                    smpimg.ImageStatesReadResponse(
                        images=self._images(), version=head.version, sequence=head.sequence
                    )
                )
            if group == _IMG and command == _IMG_CMD.STATE and op == smphdr.OP.WRITE:
                return self._state_write(head, smpimg.ImageStatesWriteRequest.loads(frame))
            if group == _IMG and command == _IMG_CMD.UPLOAD and op == smphdr.OP.WRITE:
                return self._upload(head, smpimg.ImageUploadWriteRequest.loads(frame))
        except (ValidationError, ValueError, TypeError, cbor2.CBORDecodeError) as exc:
            return SMPReply([error_frame(head, MGMT_ERR.EINVAL, f"malformed request: {exc}")])
        return SMPReply([error_frame(head, MGMT_ERR.ENOTSUP, "not supported")])

    @staticmethod
    def _answer(message: smpmsg.Response) -> SMPReply:
        return SMPReply([bytes(message)])

    def _images(self) -> list[smpimg.ImageState]:
        return [smpimg.ImageState(**state) for state in self.mcuboot.image_states()]

    # --- image state ------------------------------------------------------------------

    def _state_write(
        self, head: smphdr.Header, request: smpimg.ImageStatesWriteRequest
    ) -> SMPReply:
        try:
            if request.confirm:
                self.mcuboot.confirm(request.hash)
            elif request.hash is None:
                return SMPReply([error_frame(head, MGMT_ERR.EINVAL, "hash required for test")])
            else:
                self.mcuboot.mark_test(request.hash)
        except LookupError as exc:
            return SMPReply([error_frame(head, MGMT_ERR.ENOENT, str(exc))])
        return self._answer(
            smpimg.ImageStatesWriteResponse(
                images=self._images(), version=head.version, sequence=head.sequence
            )
        )

    # --- upload -----------------------------------------------------------------------

    def _upload(self, head: smphdr.Header, request: smpimg.ImageUploadWriteRequest) -> SMPReply:
        data = bytes(request.data)
        if request.off == 0:
            refusal = self._start_upload(head, request)
            if refusal is not None:
                return refusal
            if self._data:  # the same image as the interrupted upload: resume
                self.resumed_at.append(len(self._data))
                return self._offset(head)
        elif not self._length:
            return SMPReply([error_frame(head, MGMT_ERR.EBADSTATE, "no upload in progress")])
        elif request.off != len(self._data):
            return self._offset(head)  # the client resynchronises from our offset
        if len(self._data) + len(data) > self._length:
            return SMPReply([error_frame(head, MGMT_ERR.EINVAL, "data beyond the image length")])
        if self.corrupt_upload and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.corrupt_upload = False
        self._data.extend(data)
        limit = self.drop_upload_at
        if limit is not None and len(self._data) >= limit and len(self._data) < self._length:
            self.drop_upload_at = None
            logger.info("simulated SMP server: dropping the link at offset %d", len(self._data))
            return SMPReply(drop_link=True)
        if len(self._data) < self._length:
            return self._offset(head)
        return self._finish(head)

    def _start_upload(
        self, head: smphdr.Header, request: smpimg.ImageUploadWriteRequest
    ) -> SMPReply | None:
        """Checks of a first chunk; None when the upload may (re)start or resume."""
        if self._battery_level() < self.low_battery_level:
            self.refused_low_battery += 1
            return SMPReply([error_frame(head, MGMT_ERR.EBUSY, BATTERY_LOW_REASON)])
        if request.image not in (None, 0):
            return SMPReply([error_frame(head, MGMT_ERR.EINVAL, "only image 0")])
        if request.len is None or request.len <= 0:
            return SMPReply([error_frame(head, MGMT_ERR.EINVAL, "len required at offset 0")])
        if request.len > self.mcuboot.slot_size:
            return SMPReply([error_frame(head, MGMT_ERR.ENOMEM, "image larger than the slot")])
        same = (
            request.sha is not None
            and request.sha == self._sha
            and request.len == self._length
            and 0 < len(self._data) < self._length
        )
        if same:
            return None
        data = bytes(request.data)
        if len(data) >= 4 and int.from_bytes(data[:4], "little") != IMAGE_MAGIC:
            return SMPReply([error_frame(head, MGMT_ERR.EINVAL, "not an MCUboot image")])
        self._data = bytearray()
        self._length = request.len
        self._sha = request.sha
        self.mcuboot.erase_secondary()
        return None

    def _offset(self, head: smphdr.Header) -> SMPReply:
        return self._answer(
            smpimg.ImageUploadWriteResponse(
                off=len(self._data), version=head.version, sequence=head.sequence
            )
        )

    def _finish(self, head: smphdr.Header) -> SMPReply:
        data, expected = bytes(self._data), self._sha
        self._data, self._length, self._sha = bytearray(), 0, None
        match: bool | None = None
        if expected is not None:
            match = hashlib.sha256(data).digest() == expected
        if match is not False:
            self.mcuboot.write_secondary(data)
        else:
            logger.info("simulated SMP server: upload hash mismatch, image dropped")
        return self._answer(
            smpimg.ImageUploadWriteResponse(
                off=len(data), match=match, version=head.version, sequence=head.sequence
            )
        )


__all__ = [
    "BATTERY_LOW_REASON",
    "DEFAULT_BUFFER_SIZE",
    "SMPFrameAssembler",
    "SMPReply",
    "SimulatedSMPServer",
    "error_frame",
]
