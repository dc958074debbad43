"""Bytes-level tests of the simulated SMP server and MCUboot (no radio): SMP frames as
smpclient puts them on the wire, answers as bytes and as smp's decoded messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
import pytest
from smp import header as smphdr
from smp import image_management as smpimg
from smp import os_management as smpos
from smp.error import MGMT_ERR
from smpclient.requests.image_management import (
    ImageStatesRead,
    ImageStatesWrite,
    ImageUploadWrite,
)
from smpclient.requests.os_management import MCUMgrParametersRead, ResetWrite

from device_drivers.mcuboot_image import inspect_image, read_image
from device_drivers.simulation.firmware_images import (
    application_payload,
    generate_key,
    sign_image,
)
from device_drivers.simulation.mcuboot import BootOutcome, SimulatedMCUboot
from device_drivers.simulation.smp_server import (
    SimulatedSMPServer,
    SMPFrameAssembler,
    error_frame,
)


class Images:
    def __init__(self, directory: Path) -> None:
        self.key = generate_key(directory / "k.pem")
        self.v1 = sign_image(self.key, "1.0.0", application_payload("M", "1.0.0"))
        self.v2 = sign_image(self.key, "2.0.1", application_payload("M", "2.0.1", 5000))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(tmp_path_factory.mktemp("smp"))


class Device:
    def __init__(self, images: Images, battery: int = 90) -> None:
        self.battery = battery
        self.mcuboot = SimulatedMCUboot(images.key, images.v1)
        self.server = SimulatedSMPServer(self.mcuboot, battery_level=lambda: self.battery)


def one(server: SimulatedSMPServer, frame: bytes) -> bytes:
    reply = server.handle(frame)
    assert len(reply.frames) == 1 and not reply.drop_link
    return reply.frames[0]


def chunk(off: int, data: bytes, image: bytes | None = None, seq: int = 1) -> bytes:
    """An upload request; the first one carries len and sha of `image`."""
    fields: dict[str, object] = {"off": off, "data": data}
    if off == 0 and image is not None:
        fields.update(len=len(image), sha=hashlib.sha256(image).digest(), image=0)
    body = cbor2.dumps(fields, canonical=True)
    return bytes([0x0A, 0, *len(body).to_bytes(2, "big"), 0, 1, seq, 1]) + body


def test_mcumgr_parameters_exact_bytes(images: Images) -> None:
    server = Device(images).server
    request = MCUMgrParametersRead(sequence=7).BYTES
    # op READ, version 2 (bits 3-4), length 1, group 0 (OS), sequence 7, command 6; {}.
    assert request == bytes.fromhex("0800000100000706a0")
    answer = one(server, request)
    assert answer[:8] == bytes([0x09, 0, 0, len(answer) - 8, 0, 0, 7, 6])
    assert cbor2.loads(answer[8:]) == {"buf_size": 1024, "buf_count": 4}
    assert smpos.MCUMgrParametersReadResponse.loads(answer).buf_size == 1024


def test_image_list_primary_only(images: Images) -> None:
    device = Device(images)
    answer = one(device.server, ImageStatesRead(sequence=3).BYTES)
    head = smphdr.Header.loads(answer[:8])
    assert (head.op, head.group_id, head.sequence, head.command_id) == (
        smphdr.OP.READ_RSP,
        smphdr.GroupId.IMAGE_MANAGEMENT,
        3,
        0,
    )
    body = cbor2.loads(answer[8:])
    (state,) = body["images"]
    assert state["slot"] == 0 and state["version"] == "1.0.0"
    assert state["active"] is True and state["confirmed"] is True
    assert state["hash"] == inspect_image(images.v1, images.key).hash


def upload(server: SimulatedSMPServer, image: bytes, size: int = 400) -> list[int]:
    offsets, off, seq = [], 0, 0
    while True:
        seq = (seq + 1) % 256
        answer = one(server, chunk(off, image[off : off + size], image, seq))
        body = cbor2.loads(answer[8:])
        assert "rc" not in body, body
        off = body["off"]
        offsets.append(off)
        if off == len(image):
            assert body.get("match") is True
            return offsets


def test_upload_test_reset_confirm(images: Images) -> None:
    device = Device(images)
    offsets = upload(device.server, images.v2)
    assert offsets == sorted(offsets) and offsets[-1] == len(images.v2)
    v2_hash = read_image(images.v2).hash
    assert device.mcuboot.secondary is not None and device.mcuboot.secondary.info.hash == v2_hash

    answer = one(device.server, ImageStatesWrite(hash=v2_hash).BYTES)
    listed = smpimg.ImageStatesWriteResponse.loads(answer).images
    assert [(i.slot, i.version, bool(i.pending)) for i in listed] == [
        (0, "1.0.0", False),
        (1, "2.0.1", True),
    ]
    reply = device.server.handle(ResetWrite().BYTES)
    assert reply.reset and cbor2.loads(reply.frames[0][8:]) == {}
    assert device.mcuboot.reset() is BootOutcome.SWAPPED
    assert device.mcuboot.running_version == "2.0.1" and device.mcuboot.testing
    one(device.server, ImageStatesWrite(confirm=True).BYTES)
    assert device.mcuboot.primary.confirmed and not device.mcuboot.testing
    assert device.mcuboot.reset() is BootOutcome.UNCHANGED


def test_upload_resumes_from_the_offset_reached(images: Images) -> None:
    device = Device(images)
    image = images.v2
    one(device.server, chunk(0, image[:500], image))
    one(device.server, chunk(500, image[500:1200]))
    # The link dropped; the client starts again at offset 0 with the same hash.
    answer = one(device.server, chunk(0, image[:500], image, seq=9))
    assert cbor2.loads(answer[8:]) == {"off": 1200}
    assert device.server.resumed_at == [1200]
    # A chunk at a wrong offset is answered with the offset the server expects.
    assert cbor2.loads(one(device.server, chunk(700, image[700:900]))[8:]) == {"off": 1200}
    answer = one(device.server, chunk(1200, image[1200:]))
    assert cbor2.loads(answer[8:]) == {"off": len(image), "match": True}


def test_a_different_image_restarts_the_upload(images: Images) -> None:
    device = Device(images)
    one(device.server, chunk(0, images.v2[:500], images.v2))
    answer = one(device.server, chunk(0, images.v1[:300], images.v1))
    assert cbor2.loads(answer[8:]) == {"off": 300}
    assert device.server.resumed_at == []


def error_of(answer: bytes) -> tuple[int, str]:
    body = cbor2.loads(answer[8:])
    assert set(body) == {"rc", "rsn"}
    return body["rc"], body["rsn"]


def test_refusals(images: Images) -> None:
    device = Device(images, battery=15)
    assert error_of(one(device.server, chunk(0, images.v2[:100], images.v2))) == (
        MGMT_ERR.EBUSY,
        "battery low",
    )
    assert device.server.refused_low_battery == 1
    # smp (smpclient's codec) reads it as the image group's version-1 error.
    decoded = smpimg.ImageManagementErrorV1.loads(
        one(device.server, chunk(0, images.v2[:100], images.v2))
    )
    assert (decoded.rc, decoded.rsn) == (MGMT_ERR.EBUSY, "battery low")
    device.battery = 80
    not_an_image = b"\x00" * 64
    assert error_of(one(device.server, chunk(0, not_an_image, not_an_image))) == (
        MGMT_ERR.EINVAL,
        "not an MCUboot image",
    )
    huge = images.v2[:100] + b"\x00" * (device.mcuboot.slot_size)
    assert error_of(one(device.server, chunk(0, huge[:100], huge)))[0] == MGMT_ERR.ENOMEM
    assert error_of(one(device.server, chunk(100, b"abc")))[0] == MGMT_ERR.EBADSTATE
    assert error_of(one(device.server, ImageStatesWrite(hash=b"\x01" * 32).BYTES))[0] == (
        MGMT_ERR.ENOENT
    )
    echo = smpos.EchoWriteRequest(d="hi").BYTES
    assert error_of(one(device.server, echo)) == (MGMT_ERR.ENOTSUP, "not supported")


def test_corrupt_upload_reports_mismatch_and_keeps_nothing(images: Images) -> None:
    device = Device(images)
    device.server.corrupt_upload = True
    image = images.v2
    one(device.server, chunk(0, image[:2000], image))
    answer = one(device.server, chunk(2000, image[2000:]))
    assert cbor2.loads(answer[8:]) == {"off": len(image), "match": False}
    assert device.mcuboot.secondary is None


def test_drop_mid_transfer_then_resume(images: Images) -> None:
    device = Device(images)
    device.server.drop_upload_at = 1000
    image = images.v2
    one(device.server, chunk(0, image[:600], image))
    reply = device.server.handle(chunk(600, image[600:1100]))
    assert reply.drop_link and reply.frames == []
    assert device.server.upload_offset == 1100
    assert cbor2.loads(one(device.server, chunk(0, image[:600], image))[8:]) == {"off": 1100}


def test_frame_assembler_joins_and_splits_writes() -> None:
    a, b = ImageStatesRead(sequence=1).BYTES, MCUMgrParametersRead(sequence=2).BYTES
    assembler = SMPFrameAssembler()
    assert assembler.feed(a[:5]) == []
    assert assembler.feed(a[5:] + b[:3]) == [a]
    assert assembler.feed(b[3:]) == [b]
    # A frame longer than the buffer is dropped, not waited for forever.
    big = bytes([0x0A, 0, 0x10, 0x00, 0, 1, 0, 1])
    assert SMPFrameAssembler(limit=1024).feed(big) == []


def test_error_frame_bytes() -> None:
    head = smphdr.Header.loads(ImageUploadWrite(off=0, data=b"", sequence=5).BYTES[:8])
    frame = error_frame(head, MGMT_ERR.EBUSY, "battery low")
    body = cbor2.dumps({"rc": 10, "rsn": "battery low"}, canonical=True)
    assert frame == bytes([0x0B, 0, 0, len(body), 0, 1, 5, 1]) + body


def test_bootloader_rejects_foreign_signature_and_reverts_unconfirmed(
    images: Images, tmp_path: Path
) -> None:
    foreign_key = generate_key(tmp_path / "other.pem")
    foreign = sign_image(foreign_key, "9.0.0", application_payload("M", "9"))
    mcuboot = SimulatedMCUboot(images.key, images.v1)
    mcuboot.write_secondary(foreign)
    mcuboot.mark_test(read_image(foreign).hash)
    assert mcuboot.reset() is BootOutcome.REJECTED
    assert mcuboot.running_version == "1.0.0" and mcuboot.secondary is None
    assert mcuboot.last_rejection == "invalid_signature"

    mcuboot.write_secondary(images.v2)
    mcuboot.mark_test(read_image(images.v2).hash)
    assert mcuboot.reset() is BootOutcome.SWAPPED
    assert mcuboot.reset() is BootOutcome.REVERTED
    assert mcuboot.running_version == "1.0.0" and mcuboot.primary.confirmed
    states = mcuboot.image_states()
    assert [s["version"] for s in states] == ["1.0.0", "2.0.1"]
    assert states[1]["pending"] is False

    with pytest.raises(ValueError, match="does not verify"):
        SimulatedMCUboot(images.key, foreign)
