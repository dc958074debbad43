"""An MCUboot image's version and hash, and its signature check, with imgtool.

The hub reads a firmware image's version and MCUboot hash (the hash the device's image list
shows) before it uploads it; the simulated bootloader checks signatures the same way.
imgtool (MCUboot's own image tool) does the parsing and the verification.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgtool.image import Image, VerifyResult
from smpclient.mcuboot import IMAGE_TLV, MCUBootImageError
from smpclient.mcuboot import ImageInfo as MCUbootImageInfo

#: MCUboot's image header magic (little-endian u32 at offset 0).
IMAGE_MAGIC = 0x96F3B83D


@dataclass(frozen=True)
class ImageInfo:
    """What the bootloader reads from an image: version, MCUboot hash, whether it verifies."""

    version: str
    hash: bytes
    valid: bool
    reason: str = ""


def version_text(version: tuple[int, int, int, int]) -> str:
    """ "1.2.3" as Zephyr's image list shows it; "1.2.3.4" with a build number."""
    major, minor, revision, build = version
    text = f"{major}.{minor}.{revision}"
    return f"{text}.{build}" if build else text


def inspect_image(image: bytes, key: Any | None) -> ImageInfo:
    """Verify `image` with imgtool against `key` (None: hash only); version and hash.

    imgtool's verify reads a file, so the image is written to a temporary one.
    """
    with tempfile.TemporaryDirectory(prefix="hemhub-mcuboot-") as tmp:
        path = Path(tmp) / "image.bin"
        path.write_bytes(image)
        try:
            result, version, digest, _ = Image.verify(str(path), key)
        except Exception as exc:  # imgtool raises on truncated or garbled TLV areas
            return ImageInfo("", b"", False, f"unreadable image: {exc}")
    if result != VerifyResult.OK or version is None or digest is None:
        return ImageInfo(
            version_text(version) if version else "", digest or b"", False, result.name.lower()
        )
    return ImageInfo(version_text(version), bytes(digest), True)


def read_image(image: bytes) -> ImageInfo:
    """Version and SHA-256 TLV as a device application reads them, without checking them.

    What Zephyr's image list shows for a slot (smpclient's MCUboot image parser); `valid`
    only says the header and TLVs could be read. The bootloader's check is
    `inspect_image` with its key.
    """
    with tempfile.TemporaryDirectory(prefix="hemhub-mcuboot-") as tmp:
        path = Path(tmp) / "image.bin"
        path.write_bytes(image)
        try:
            info = MCUbootImageInfo.load_file(str(path))
            digest = info.get_tlv(IMAGE_TLV.SHA256).value
        except (MCUBootImageError, ValueError, struct.error) as exc:
            return ImageInfo("", b"", False, f"unreadable image: {exc}")
    ver = info.header.ver
    return ImageInfo(
        version_text((ver.major, ver.minor, ver.revision, ver.build_num)), digest, True
    )


__all__ = ["IMAGE_MAGIC", "ImageInfo", "inspect_image", "read_image", "version_text"]
