"""Signed MCUboot images for simulated devices, made with imgtool (MCUboot's image tool).

A simulated device's "application" is a few bytes of payload; `sign_image` wraps them in an
MCUboot image (header, version, SHA-256 and signature TLVs) exactly as `imgtool sign` does
for a real build, so the simulated bootloader checks real signatures. Real releases are
signed with the `imgtool sign` command line (docs/firmware-devices.md).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

from imgtool import keys
from imgtool.image import Image
from imgtool.version import decode_version

#: Header size and slot size the simulated devices' images are built for.
HEADER_SIZE = 0x200
SLOT_SIZE = 0x40000


def generate_key(path: Path) -> Any:
    """A new ECDSA P-256 signing key written to `path` (PEM, unencrypted); the key object."""
    key = keys.ECDSA256P1.generate()
    key.export_private(str(path))
    return key


def load_key(path: Path) -> Any:
    """An imgtool key object from a PEM file (private, or public for verifying)."""
    return keys.load(str(path))


def sign_image(key: Any, version: str, payload: bytes, *, slot_size: int = SLOT_SIZE) -> bytes:
    """`payload` as an MCUboot image of `version` ("1.2.3"), signed with `key`."""
    with tempfile.TemporaryDirectory(prefix="hemhub-imgtool-") as tmp:
        raw, out = Path(tmp) / "app.bin", Path(tmp) / "app.signed.bin"
        raw.write_bytes(payload)
        image = Image(
            version=decode_version(version),
            header_size=HEADER_SIZE,
            pad_header=True,
            slot_size=slot_size,
        )
        # imgtool prints its progress ("sign the payload") on stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            image.load(str(raw))
            image.create(key, "hash", None)
            image.save(str(out))
        return out.read_bytes()


def application_payload(model: str, version: str, size: int = 6000) -> bytes:
    """A deterministic stand-in for a device application of `model` at `version`."""
    seed = f"{model}/{version}/".encode()
    return (seed * (size // len(seed) + 1))[:size]


__all__ = [
    "HEADER_SIZE",
    "SLOT_SIZE",
    "application_payload",
    "generate_key",
    "load_key",
    "sign_image",
]
