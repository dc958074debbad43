"""The access log's hash chain, checked independently of the database that computed it.

The database chains every audit_log row on INSERT (ingest/sql/0017_audit_chain.sql);
this module recomputes the same hashes in Python from the stored fields and reports the
first broken link: a changed row (its hash, or its content digest, no longer matches),
a deleted row (a gap in chain_seq, and the next row's prev_hash points at nothing), a
pseudonymisation nobody recorded, and a chain head that disagrees with the last row
(a truncated tail, when the head was left alone). `verify_rows` is pure (rows in, a
verdict out); `verify_database` reads the rows as the owner or any role that may SELECT
them (`hemhub audit verify`, docs/audit.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The action of the row that records a resident's erasure (api.routers.erasure).
ERASE_ACTION = "resident.erase"

#: What the verifier reads of each row, in chain order.
ROWS_SQL = """
SELECT chain_seq, id, at, subject, role, tenant_id, action, patient_id::text AS patient_id,
       resource, detail::text AS detail, content_salt, content_digest, prev_hash, row_hash,
       pseudonymised_as::text AS pseudonymised_as
FROM audit_log ORDER BY chain_seq
"""
HEAD_SQL = "SELECT seq, hash FROM audit_chain_head"


def field_bytes(value: str | None) -> bytes:
    """One field as hashed: `<UTF-8 byte length>:<bytes>`, `-` for NULL (unambiguous)."""
    if value is None:
        return b"-"
    raw = value.encode()
    return str(len(raw)).encode() + b":" + raw


def content_digest(salt: bytes, patient_id: str | None, resource: str, detail: str | None) -> bytes:
    return hashlib.sha256(
        salt + field_bytes(patient_id) + field_bytes(resource) + field_bytes(detail)
    ).digest()


def epoch_micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def row_hash(row: dict[str, Any], prev_hash: bytes, digest: bytes) -> bytes:
    parts = [
        str(row["chain_seq"]),
        str(row["id"]),
        str(epoch_micros(row["at"])),
        row["subject"],
        row["role"],
        row["tenant_id"],
        row["action"],
    ]
    return hashlib.sha256(prev_hash + b"".join(field_bytes(p) for p in parts) + digest).digest()


def seqs_digest(seqs: Iterable[int]) -> str:
    """The digest an erasure records of the rows it pseudonymised (their chain_seq, in
    order, comma-separated): hex of sha256, as hemhub_erase_resident computes it."""
    return hashlib.sha256(",".join(str(s) for s in seqs).encode()).hexdigest()


@dataclass
class Verdict:
    """The chain's state: intact, or the first broken link and what differs."""

    rows: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS.hex()
    broken_at_id: int | None = None
    broken_at_seq: int | None = None
    problem: str | None = None
    pseudonymised_rows: int = 0
    erasures: int = 0
    _groups: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": self.ok,
            "rows": self.rows,
            "head": {"chain_seq": self.head_seq, "row_hash": self.head_hash},
            "pseudonymised_rows": self.pseudonymised_rows,
            "erasures": self.erasures,
        }
        if not self.ok:
            doc["first_broken_link"] = {
                "id": self.broken_at_id,
                "chain_seq": self.broken_at_seq,
                "problem": self.problem,
            }
        return doc

    def _break(self, row: dict[str, Any] | None, problem: str) -> Verdict:
        if row is not None:
            self.broken_at_id, self.broken_at_seq = row["id"], row["chain_seq"]
        self.problem = problem
        return self


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def verify_rows(rows: Iterable[dict[str, Any]], head: tuple[int, bytes] | None) -> Verdict:
    """Walk the rows in chain_seq order; stop at the first broken link.

    `head` is audit_chain_head (seq, hash), or None when that table holds no row.
    """
    verdict = Verdict()
    prev, expected_seq = GENESIS, 1
    for row in rows:
        seq = row["chain_seq"]
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            return verdict._break(
                row, f"chain_seq {missing} missing before this row: a row was deleted"
            )
        if _bytes(row["prev_hash"]) != prev:
            return verdict._break(
                row,
                "prev_hash differs from the previous row's hash: a row before it was"
                " deleted or replaced",
            )
        stored_digest = _bytes(row["content_digest"]) or b""
        pseudonym = row["pseudonymised_as"]
        if pseudonym is None:
            salt = _bytes(row["content_salt"])
            if salt is None:
                return verdict._break(row, "the content salt is gone but no erasure is recorded")
            digest = content_digest(salt, row["patient_id"], row["resource"], row["detail"])
            if digest != stored_digest:
                return verdict._break(
                    row, "patient_id, resource or detail differ from what was hashed"
                )
        else:
            # Pseudonymised by an erasure: its content changed by design and is covered by
            # the digest kept from before; the erasure's own row must account for it.
            if row["content_salt"] is not None:
                return verdict._break(row, "pseudonymised, yet its content salt is kept")
            verdict._groups.setdefault(pseudonym, []).append(seq)
            verdict.pseudonymised_rows += 1
        computed = row_hash(row, prev, stored_digest)
        if computed != _bytes(row["row_hash"]):
            return verdict._break(
                row,
                "id, at, subject, role, tenant_id or action differ from what was hashed"
                " (or row_hash was rewritten)",
            )
        if row["action"] == ERASE_ACTION and pseudonym is None and row["patient_id"]:
            problem = _check_erasure(verdict, row)
            if problem is not None:
                return verdict._break(row, problem)
        prev, expected_seq = computed, seq + 1
        verdict.rows += 1
        verdict.head_seq, verdict.head_hash = seq, computed.hex()
    unrecorded = [p for p, seqs in verdict._groups.items() if seqs]
    if unrecorded:
        return verdict._break(
            None, f"rows pseudonymised as {unrecorded[0]} without an erasure row recording them"
        )
    if head is None:
        if verdict.rows:
            return verdict._break(None, "audit_chain_head is missing")
    elif head[0] != verdict.head_seq or bytes(head[1]) != prev:
        return verdict._break(
            None,
            f"the chain ends at chain_seq {verdict.head_seq} but audit_chain_head says"
            f" {head[0]}: rows at the end were deleted (or the head was rewritten)",
        )
    return verdict


def _check_erasure(verdict: Verdict, row: dict[str, Any]) -> str | None:
    """An erasure's row names how many rows it pseudonymised and a digest of which."""
    try:
        detail = json.loads(row["detail"] or "{}")
        count, digest = int(detail["audit_rows"]), str(detail["audit_rows_digest"])
    except (ValueError, KeyError, TypeError):
        return "an erasure row without audit_rows and audit_rows_digest"
    seqs = verdict._groups.pop(row["patient_id"], [])
    verdict.erasures += 1
    if len(seqs) != count or seqs_digest(seqs) != digest:
        return (
            f"the erasure recorded {count} pseudonymised rows, the log holds {len(seqs)}"
            " with that pseudonym (or others): rows were pseudonymised or changed since"
        )
    return None


def verify_database(database_url: str) -> Verdict:
    """Read the whole chain (a server-side cursor, in one snapshot) and verify it."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        found = conn.execute(HEAD_SQL).fetchone()
        head = None if found is None else (int(found["seq"]), bytes(found["hash"]))
        with conn.cursor(name="hemhub_audit_verify") as cur:
            cur.itersize = 2000
            cur.execute(ROWS_SQL)
            return verify_rows(cur, head)
