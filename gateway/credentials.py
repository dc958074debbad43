"""The hub's broker credentials, kept in files only the service user can read."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path


class InsecureCredentialsError(PermissionError):
    """A secret file that the group or others can read (or that is missing)."""


def read_secret(path: Path) -> str:
    """The secret in `path`, refusing one that anyone but its owner can read."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureCredentialsError(
            f"{path} is accessible to group or others (mode {stat.S_IMODE(mode):o});"
            " run: chmod 600 " + str(path)
        )
    return path.read_text().strip()


@dataclass(frozen=True)
class BrokerCredentials:
    """Per-hub credentials: a user name (the hub id) and a password file, or a client
    certificate; plus the CA that signs the broker's certificate."""

    username: str | None = None
    password_file: Path | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if self.key_file:
            read_secret(Path(self.key_file))  # refuse a world-readable private key early

    def password(self) -> str | None:
        return read_secret(self.password_file) if self.password_file else None
