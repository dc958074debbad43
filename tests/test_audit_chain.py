"""The access log's hash chain (ingest/sql/0017_audit_chain.sql, ingest/audit_chain.py):
computed by the database on INSERT, one chain under concurrent inserts, backfilled for
rows written before it existed, and `hemhub audit verify` finds an edited row, a deleted
row and a cut-off tail, done as an attacker with database access would (the owner or a
superuser disabling the append-only trigger)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ingest import migrations
from ingest.audit_chain import verify_database
from ingest.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]


def _insert(url: str, n: int, tenant: str = "t", detail: dict[str, object] | None = None) -> None:
    with psycopg.connect(url) as conn:
        for i in range(n):
            conn.execute(
                "INSERT INTO audit_log (subject, role, tenant_id, action, resource, detail)"
                " VALUES (%s, 'nurse', %s, 'readings.list', 'patients/x/readings', %s)",
                (f"nurse-{i}", tenant, Jsonb(detail or {"count": i, "name": "Åsa Öberg"})),
            )


def _tamper(url: str, statement: str) -> None:
    """What an attacker with the owner's or a superuser's rights can do."""
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete")
        conn.execute(statement)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_or_delete")


def _verify_cli(url: str) -> tuple[int, dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-m", "hemhub.cli", "audit", "verify", "--database-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def test_the_database_chains_each_row_and_ignores_supplied_hashes(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO audit_log (subject, role, tenant_id, action, resource, at, chain_seq,"
            " prev_hash, row_hash, content_digest)"
            " VALUES ('n', 'nurse', 't', 'a', 'r', '2001-01-01', 99, '\\x00', '\\x01', '\\x02')"
        )
        row = conn.execute(
            "SELECT chain_seq, at > now() - interval '1 hour', length(row_hash),"
            " length(content_salt) FROM audit_log"
        ).fetchone()
    # the database's values, not the client's: a backdated time or a chosen hash is ignored
    assert row == (1, True, 32, 32)
    _insert(database_url, 3)
    verdict = verify_database(database_url)
    assert verdict.ok, verdict.as_dict()
    assert verdict.rows == 4 and verdict.head_seq == 4


def _insert_many(url: str, n: int) -> None:
    """n rows in one statement (a list response's record_many), autocommit, three times."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(
                "INSERT INTO audit_log (subject, role, tenant_id, action, resource, patient_id)"
                " SELECT 'nurse-m', 'nurse', 'm', 'patients.list', 'patients', gen_random_uuid()"
                " FROM generate_series(1, %s)",
                (n,),
            )


def test_concurrent_inserts_form_one_chain(database_url: str) -> None:
    migrate(database_url)
    threads = [
        threading.Thread(target=_insert, args=(database_url, 25, f"t{i}")) for i in range(6)
    ] + [threading.Thread(target=_insert_many, args=(database_url, 50)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(database_url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT chain_seq FROM audit_log ORDER BY chain_seq")]
        head = conn.execute("SELECT seq FROM audit_chain_head").fetchone()
    assert seqs == list(range(1, 451))
    assert head == (450,)
    assert verify_database(database_url).ok


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ("UPDATE audit_log SET subject = 'someone else' WHERE id = 3", "subject"),
        ("UPDATE audit_log SET at = at - interval '1 day' WHERE id = 3", "subject"),
        ("UPDATE audit_log SET detail = '{\"count\": 0}' WHERE id = 3", "detail differ"),
        (
            "UPDATE audit_log SET patient_id = gen_random_uuid() WHERE id = 3",
            "detail differ",
        ),
    ],
)
def test_verify_finds_an_edited_row(database_url: str, edit: str, problem: str) -> None:
    migrate(database_url)
    _insert(database_url, 5)
    _tamper(database_url, edit)
    code, report, stderr = _verify_cli(database_url)
    assert code == 10
    assert report["ok"] is False
    link = report["first_broken_link"]
    assert isinstance(link, dict)
    assert (link["id"], link["chain_seq"]) == (3, 3)
    assert problem in str(link["problem"])
    assert "broken at id 3" in stderr


def test_verify_finds_a_deleted_row(database_url: str) -> None:
    migrate(database_url)
    _insert(database_url, 5)
    _tamper(database_url, "DELETE FROM audit_log WHERE id = 2")
    code, report, _ = _verify_cli(database_url)
    assert code == 10
    assert report["first_broken_link"] == {
        "id": 3,
        "chain_seq": 3,
        "problem": "chain_seq 2 missing before this row: a row was deleted",
    }
    assert report["rows"] == 1  # the rows before the break verified


def test_verify_finds_a_deleted_row_whose_successors_were_renumbered(database_url: str) -> None:
    """Closing the gap is not enough: the next row's prev_hash names the deleted row."""
    migrate(database_url)
    _insert(database_url, 4)
    _tamper(database_url, "DELETE FROM audit_log WHERE id = 2")
    _tamper(database_url, "UPDATE audit_log SET chain_seq = chain_seq - 1 WHERE id > 2")
    verdict = verify_database(database_url)
    assert not verdict.ok
    assert verdict.broken_at_id == 3
    assert verdict.problem is not None and "prev_hash" in verdict.problem


def test_verify_finds_a_cut_off_tail(database_url: str) -> None:
    migrate(database_url)
    _insert(database_url, 4)
    _tamper(database_url, "DELETE FROM audit_log WHERE id = 4")
    verdict = verify_database(database_url)
    assert not verdict.ok
    assert verdict.problem is not None and "audit_chain_head says 4" in verdict.problem


def test_an_intact_chain_verifies_with_exit_0(database_url: str) -> None:
    migrate(database_url)
    _insert(database_url, 3)
    code, report, _ = _verify_cli(database_url)
    assert code == 0
    assert report["ok"] is True and report["rows"] == 3
    with psycopg.connect(database_url) as conn:
        head = conn.execute("SELECT seq, encode(hash, 'hex') FROM audit_chain_head").fetchone()
    assert report["head"] == {"chain_seq": head[0], "row_hash": head[1]} if head else False


def test_rows_written_before_the_chain_are_backfilled(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = migrations._migration_files()
    before = [(v, s) for v, s in every if v < "0017"]
    monkeypatch.setattr(migrations, "_migration_files", lambda: before)
    migrate(database_url)
    _insert(database_url, 5)
    monkeypatch.setattr(migrations, "_migration_files", lambda: every)
    assert "0017_audit_chain" in migrate(database_url).applied
    _insert(database_url, 2)  # and the chain goes on from the backfilled head
    verdict = verify_database(database_url)
    assert verdict.ok, verdict.as_dict()
    assert verdict.rows == 7
    with psycopg.connect(database_url) as conn:
        order = [r[0] for r in conn.execute("SELECT id FROM audit_log ORDER BY chain_seq")]
    assert order == sorted(order)
