"""The hub's durable outbox: every reading is committed here before anything else.

SQLite in WAL mode with `synchronous=FULL`, so a committed reading survives power loss.
A reading is *pending* until the broker acknowledges (PUBACK) the message that carried
it, then *sent*; it leaves the outbox only on its receipt from ingest (`Receipt`),
sent after the commit that stored it. A PUBACK proves nothing beyond the broker: a
restart without persistence, a shared subscription it did not restore, a queue limit
or a failover to another node of a cluster drops the message after it. A sent reading
whose receipt does not come within its timeout (doubling per attempt, up to a
maximum) is published again; ingest deduplicates it. Both states survive restarts.

A receipt says stored or duplicate (forget it) or rejected: the reading then moves to
`rejected`, with the reason code, for inspection, and is never resent. Keys forgotten
or rejected are remembered for a while, so a device that replays its whole stored
backlog on every connection does not make the hub publish the same readings again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.failpoints import failpoint
from hemhub.contract import Reading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    device_key      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivered (
    idempotency_key TEXT PRIMARY KEY,
    delivered_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_at ON delivered (delivered_at);
-- Readings ingest rejected, kept for inspection (counted in the hub's status).
CREATE TABLE IF NOT EXISTS rejected (
    idempotency_key TEXT PRIMARY KEY,
    payload         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    rejected_at     REAL NOT NULL
);
-- The newest record number committed per device (glucose meters, dispensers): the next
-- session fetches only what follows, and the device may delete what precedes.
CREATE TABLE IF NOT EXISTS device_sequences (
    address       TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
"""

#: How long delivered keys are remembered to suppress device backlog replays.
DELIVERED_MEMORY_S = 30 * 24 * 3600

# The sent state (an outbox of an older hub gains it on open): `resend_at` is NULL while
# pending, else when to publish again without a receipt; `attempts` counts PUBACKs.
_SENT_COLUMNS = {"resend_at": "REAL", "attempts": "INTEGER NOT NULL DEFAULT 0"}


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    idempotency_key: str
    payload: str  # Reading as JSON, exactly as it will be published


class Outbox:
    """A thread-safe SQLite outbox (the session loop adds, the publisher thread removes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for name, kind in _SENT_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        self._size, self._size_at = 0, float("-inf")

    def writable(self) -> bool:
        """Whether a write transaction can start (the disk and database take writes)."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, reading: Reading, *, sequence_max: int | None = None) -> bool:
        """Commit a reading; False when it is already queued or was delivered recently.

        The device's record number (`device_sequence`) becomes its last sequence when it
        is larger than the one kept, or when the counter rolled over: the kept one is
        `sequence_max` (the largest the profile's counter holds, 65535 for SIG RACP) and
        the new one lies in the lower half of the range. That is the rule by which the
        RACP session (`RecordSession.is_stored`) takes such records as new after a wrap.
        """
        payload = reading.model_dump_json()
        with self._lock:
            known = self._db.execute(
                "SELECT 1 FROM delivered WHERE idempotency_key = ?"
                " UNION ALL SELECT 1 FROM rejected WHERE idempotency_key = ?",
                (reading.idempotency_key, reading.idempotency_key),
            ).fetchone()
            if known:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outbox"
                    " (idempotency_key, device_key, payload, created_at) VALUES (?, ?, ?, ?)",
                    (reading.idempotency_key, reading.device.stable_id, payload, time.time()),
                )
                if reading.device_sequence is not None:
                    top = -1 if sequence_max is None else sequence_max
                    self._db.execute(
                        "INSERT INTO device_sequences (address, last_sequence) VALUES (?, ?)"
                        " ON CONFLICT (address) DO UPDATE SET last_sequence = CASE"
                        " WHEN ? >= 0 AND last_sequence >= ? AND excluded.last_sequence < ?"
                        " THEN excluded.last_sequence"
                        " ELSE max(last_sequence, excluded.last_sequence) END",
                        (
                            reading.device.address,
                            reading.device_sequence,
                            top,
                            top,
                            (top + 1) // 2,
                        ),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def last_sequence(self, address: str) -> int | None:
        """The newest record number committed from this device, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT last_sequence FROM device_sequences WHERE address = ?", (address,)
            ).fetchone()
        return None if row is None else int(row[0])

    def restart_sequence(self, address: str, last_sequence: int | None) -> None:
        """The device's log restarted its numbering (battery change, factory reset): keep
        the newest number of the new log, however far below the old one it is."""
        if last_sequence is None:
            self.forget_device(address)
            return
        with self._lock:
            self._db.execute(
                "INSERT INTO device_sequences (address, last_sequence) VALUES (?, ?)"
                " ON CONFLICT (address) DO UPDATE SET last_sequence = excluded.last_sequence",
                (address, last_sequence),
            )

    def forget_device(self, address: str) -> None:
        """Forget a device's record numbers (it left this hub; a reset device starts over)."""
        with self._lock:
            self._db.execute("DELETE FROM device_sequences WHERE address = ?", (address,))

    def erase(self) -> int:
        """Erase everything (a hub wipe): queued, delivered, rejected readings and record
        numbers, and give the space back (VACUUM rewrites the file, so the deleted
        readings do not linger in free pages). The number of readings never delivered."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
            for table in ("outbox", "delivered", "rejected", "device_sequences"):
                self._db.execute(f"DELETE FROM {table}")  # fixed table names
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._size_at = float("-inf")
        return int(row[0]) if row else 0

    def pending(self, limit: int, exclude: Iterable[int] = ()) -> list[OutboxEntry]:
        """The oldest entries to publish in commit order (so per-device order is kept):
        pending ones, and sent ones whose receipt is overdue."""
        excluded = set(exclude)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, idempotency_key, payload FROM outbox"
                " WHERE resend_at IS NULL OR resend_at <= ? ORDER BY seq LIMIT ?",
                (time.time(), limit + len(excluded)),
            ).fetchall()
        return [OutboxEntry(*row) for row in rows if row[0] not in excluded][:limit]

    def mark_sent(self, seqs: Sequence[int], receipt_timeout_s: float, max_s: float) -> None:
        """The broker acknowledged the entries: wait for their receipt, `receipt_timeout_s`
        after the first PUBACK, doubling with each one after, up to `max_s`."""
        if not seqs:
            return
        marks = ",".join("?" * len(seqs))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1,"
                    " resend_at = ? + min(?, ? * (1 << min(attempts, 20)))"
                    f" WHERE seq IN ({marks})",
                    (time.time(), max_s, receipt_timeout_s, *seqs),
                )
                failpoint("outbox.mark_sent")  # e.g. the disk is full
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def apply_receipt(self, forget: Sequence[str], rejected: Sequence[tuple[str, str]]) -> None:
        """Ingest's receipt: forget the stored and duplicate keys (remembering them), move
        the rejected ones to `rejected` with their reason code. Keys not here (an earlier
        receipt of a reading sent twice) change nothing."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(forget), 500):  # SQLite's limit of host parameters
                    part = forget[i : i + 500]
                    marks = ",".join("?" * len(part))
                    self._db.execute(
                        "INSERT OR REPLACE INTO delivered (idempotency_key, delivered_at) SELECT"
                        f" idempotency_key, ? FROM outbox WHERE idempotency_key IN ({marks})",
                        (now, *part),
                    )
                    self._db.execute(
                        f"DELETE FROM outbox WHERE idempotency_key IN ({marks})", tuple(part)
                    )
                for key, reason in rejected:
                    self._db.execute(
                        "INSERT OR REPLACE INTO rejected (idempotency_key, payload, reason,"
                        " rejected_at) SELECT idempotency_key, payload, ?, ? FROM outbox"
                        " WHERE idempotency_key = ?",
                        (reason, now, key),
                    )
                    self._db.execute("DELETE FROM outbox WHERE idempotency_key = ?", (key,))
                self._db.execute(
                    "DELETE FROM delivered WHERE delivered_at < ?", (now - DELIVERED_MEMORY_S,)
                )
                failpoint("outbox.receipt")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def awaiting_receipt(self) -> int:
        """Entries the broker acknowledged whose receipt has not come yet."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE resend_at IS NOT NULL"
            ).fetchone()
        return int(count)

    def rejected(self) -> list[tuple[str, str, str]]:
        """The readings ingest rejected: (key, reason code, payload), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idempotency_key, reason, payload FROM rejected ORDER BY rejected_at"
            ).fetchall()
        return [(str(k), str(r), str(p)) for k, r, p in rows]

    def rejected_count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM rejected").fetchone()
        return int(count)

    def depth(self) -> int:
        """Entries the broker has not acknowledged yet (`awaiting_receipt` counts the rest)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE resend_at IS NULL"
            ).fetchone()
        return int(count)

    def size_bytes(self) -> int:
        """Disk used by queued data (pages in use, WAL included); cached for a second
        because it is asked on every advertisement."""
        now = time.monotonic()
        if now - self._size_at > 1.0:
            with self._lock:
                page_size, pages, free = (
                    self._db.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("page_size", "page_count", "freelist_count")
                )
            wal = self.path.with_name(self.path.name + "-wal")
            wal_bytes = wal.stat().st_size if wal.exists() else 0
            self._size, self._size_at = (pages - free) * page_size + wal_bytes, now
        return self._size

    def oldest_age_s(self) -> float | None:
        with self._lock:
            (oldest,) = self._db.execute(
                "SELECT min(created_at) FROM outbox WHERE resend_at IS NULL"
            ).fetchone()
        return None if oldest is None else max(0.0, time.time() - oldest)
