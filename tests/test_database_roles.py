"""Least-privilege database roles (docs/operations.md): `hemhub migrate` runs as the owner
and grants the API's and ingest's roles what they need; the real API and ingest work
under them; nobody, not even the owner, updates, deletes or truncates the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from api.app import create_app
from api.auth import Role, ensure_demo_key, issue_token
from device_drivers.simulation.cuff import SimulatedCuff
from hemhub.contract import DeviceIdentity, topic_readings, topic_status
from hemhub.settings import Settings
from ingest import registry
from ingest.audit_chain import verify_database
from ingest.migrations import MigrationError, ensure_partitions, migrate
from ingest.pipeline import store
from ingest.roles import RuntimeRoles
from ingest.schedule import run_scheduled_evaluation
from ingest.worker import IngestWorker
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import seeded_device
from tests.mqtt_helpers import clear_retained_status
from tests.test_end_to_end import CUFF_ADDRESS, TENANT, Home, eventually, running_home

ROOT = Path(__file__).resolve().parents[1]
REFUSED_BY_TRIGGER = r"audit_log is append-only: (UPDATE|DELETE|TRUNCATE) refused"
IN_DEFAULT = "SELECT count(*) FROM readings WHERE tableoid = 'readings_default'::regclass"
AUDIT_CHANGES = (
    "UPDATE audit_log SET subject = 'someone else'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
)


@dataclass
class Installation:
    """A database set up as docs/operations.md says: owned by a role that is no
    superuser, migrated by it; the runtime roles migrate created, each granted to a
    login user of its own."""

    owner_url: str
    api_url: str
    ingest_url: str
    roles: RuntimeRoles


def _as(url: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = user
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


@pytest.fixture
def installation(database_url: str) -> Iterator[Installation]:
    tag = uuid.uuid4().hex[:8]
    owner, api, ingest = f"hemhub_owner_{tag}", f"hemhub_api_{tag}", f"hemhub_ingest_{tag}"
    api_login, ingest_login = f"{api}_login", f"{ingest}_login"
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER CREATEROLE")
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {owner}')
    roles = RuntimeRoles(api=api, ingest=ingest)
    owner_url = _as(database_url, owner)
    migrate(owner_url, roles=roles)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # the operator's step: login users that are members of the runtime roles
        conn.execute(f"CREATE ROLE {api_login} LOGIN IN ROLE {api}")
        conn.execute(f"CREATE ROLE {ingest_login} LOGIN IN ROLE {ingest}")
    try:
        yield Installation(
            owner_url=owner_url,
            api_url=_as(database_url, api_login),
            ingest_url=_as(database_url, ingest_login),
            roles=roles,
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO CURRENT_USER')
            for role in (api_login, ingest_login, api, ingest, owner):
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def home(installation: Installation, mqtt_url: str) -> Iterator[Home]:
    """A resident with a cuff on their hub, and a real ingest worker for the hub that
    connects as ingest's login user."""
    hub = unique_hub_id("hub")
    serial = f"ROLES-{unique_hub_id('bp')}"
    with psycopg.connect(installation.owner_url) as conn:
        registry.ensure_tenant(conn, TENANT, "End-to-end municipality")
        patient = registry.create_patient(conn, TENANT, "Elsa Andersson")
        cuff = registry.ensure_device(
            conn,
            DeviceIdentity(
                address=CUFF_ADDRESS,
                manufacturer=SimulatedCuff.MANUFACTURER,
                model=SimulatedCuff.MODEL,
                serial=serial,
            ),
        )
        since = datetime.now(UTC) - timedelta(days=1)
        registry.assign_device(conn, cuff, patient, since)
        registry.register_hub(conn, hub, TENANT)
        registry.allow_device(conn, hub, cuff, since)
    worker = IngestWorker(
        installation.ingest_url,
        mqtt_url,
        client_id=f"ingest-{hub}",
        topics=(topic_readings(hub), topic_status(hub)),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    try:
        yield Home(hub_id=hub, serial=serial, patient_id=str(patient), produced=[])
    finally:
        worker.stop()
        thread.join(timeout=20)
        clear_retained_status(mqtt_url, hub)
    assert not thread.is_alive(), "ingest worker did not stop"


@pytest.fixture
async def api(
    installation: Installation, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The real API app, its pool connecting as the API's login user; a nurse's and an
    HMC's Authorization header."""
    settings = Settings(
        database_url=installation.api_url,
        data_dir=tmp_path / "api",
        jwt_allow_self_made_key=True,
    )
    ensure_demo_key(settings.demo_key_file)
    nurse = issue_token(settings, sub="nurse.roles", role=Role.NURSE, tenant=TENANT)
    hmc = issue_token(settings, sub="hmc.roles", role=Role.HMC, tenant=TENANT)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hemhub") as c,
    ):
        yield c, {"nurse": f"Bearer {nurse}", "hmc": f"Bearer {hmc}"}


async def test_api_and_ingest_work_under_their_roles(
    installation: Installation,
    home: Home,
    api: tuple[httpx.AsyncClient, dict[str, str]],
    mqtt_url: str,
    tmp_path: Path,
) -> None:
    client, tokens = api
    auth = {"Authorization": tokens["nurse"]}
    fleet = {"Authorization": tokens["hmc"]}
    async with running_home(home, mqtt_url, tmp_path / "hub") as (cuff, _):
        await cuff.measure(systolic=186, diastolic=112, pulse=74)

        async def stored_and_shown() -> bool:
            r = await client.get(f"/api/v1/patients/{home.patient_id}/observations", headers=auth)
            return r.status_code == 200 and len(r.json()) == 1

        await eventually(stored_and_shown)

    # The FHIR API under the same role (no superuser: the commit horizon reads only what
    # pg_stat_activity shows every role), the reading the real worker stored.
    fhir = await client.get(f"/fhir/r4/Observation?patient={home.patient_id}", headers=auth)
    assert fhir.status_code == 200, fhir.text
    assert {e["resource"]["code"]["coding"][0]["code"] for e in fhir.json()["entry"]} == {
        "85354-9",
        "8867-4",
    }
    [alert] = (await client.get("/api/v1/alerts?status=open", headers=auth)).json()
    acked = await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth)
    assert acked.status_code == 200, acked.text
    assert (await client.get("/api/v1/patients", headers=auth)).status_code == 200
    unit = await client.post("/api/v1/care-units", headers=fleet, json={"name": "Ward 3"})
    assert unit.status_code == 201, unit.text
    placed = await client.put(
        f"/api/v1/patients/{home.patient_id}/care-unit",
        headers=fleet,
        json={"care_unit_id": unit.json()["id"]},
    )
    assert placed.status_code == 200, placed.text
    assert (await client.get("/readyz")).status_code == 200

    with psycopg.connect(installation.owner_url) as conn:
        actions = {r[0] for r in conn.execute("SELECT action FROM audit_log")}
    assert {"care_unit.create", "patient.care_unit"} <= actions
    assert len(actions) >= 4, actions


async def test_review_and_erasure_work_under_the_api_role(
    installation: Installation, api: tuple[httpx.AsyncClient, dict[str, str]], tmp_path: Path
) -> None:
    """The API's role reads the log back for the auditors and erases a resident through
    hemhub_erase_resident (the owner's function); the chain it leaves verifies as the owner."""
    client, tokens = api
    fleet = {"Authorization": tokens["hmc"]}
    settings = Settings(data_dir=tmp_path / "api", jwt_allow_self_made_key=True)
    auditor = {
        "Authorization": "Bearer "
        + issue_token(settings, sub="auditor.roles", role=Role.AUDITOR, tenant=TENANT)
    }
    with psycopg.connect(installation.owner_url) as conn:
        registry.ensure_tenant(conn, TENANT, "End-to-end municipality")
        patient = registry.create_patient(conn, TENANT, "Greta Holm")
    r = await client.post(
        f"/api/v1/residents/{patient}/deactivate", headers=fleet, json={"reason": "moved"}
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/residents/{patient}/erasure", headers=fleet, json={"basis": "retention"}
    )
    assert r.status_code == 200, r.text
    pseudonym = r.json()["pseudonym"]
    r = await client.get("/api/v1/audit", headers=auditor, params={"patient": pseudonym})
    assert r.status_code == 200, r.text
    assert [e["action"] for e in r.json()["entries"]] == ["resident.deactivate", "resident.erase"]
    r = await client.get("/api/v1/audit/export", headers=auditor)
    assert r.status_code == 200 and r.text.count("\r\n") == 4  # header, 2 rows, the review
    verdict = verify_database(installation.owner_url)
    assert verdict.ok and verdict.erasures == 1, verdict.as_dict()
    with psycopg.connect(installation.owner_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM patients WHERE display_name = 'Greta Holm'"
        ).fetchone() == (0,)


def test_ingest_role_runs_the_periodic_jobs(installation: Installation) -> None:
    """The periodic jobs run as ingest's role: the partitions job adds the months ahead
    (as the owner, through hemhub_ensure_partitions) and moves their readings out of the
    default one; the scheduled alert rules run."""
    hub = unique_hub_id()
    far = (datetime.now(UTC).replace(day=1) + timedelta(days=5 * 31)).replace(day=10)
    partition = f"readings_{far:%Y_%m}"
    with psycopg.connect(installation.ingest_url, autocommit=True) as conn:
        identity, _, _ = seeded_device(
            conn, serial="P-ROLES", assigned_from=far - timedelta(days=400), hub_id=hub
        )
        store(conn, [batch(hub, bp_reading(measured_at=far, dev=identity))])
        assert conn.execute(IN_DEFAULT).fetchone() == (1,)
        with conn.transaction():
            ensure_partitions(conn, months_ahead=6)
        assert conn.execute(IN_DEFAULT).fetchone() == (0,)
        assert conn.execute(
            "SELECT tableoid::regclass::text FROM readings WHERE hub_id = %s", (hub,)
        ).fetchone() == (partition,)
        counts = run_scheduled_evaluation(conn, datetime.now(UTC))
        assert isinstance(counts, dict)


@pytest.mark.parametrize("who", ["api", "ingest"])
def test_runtime_roles_cannot_alter_the_audit_log(installation: Installation, who: str) -> None:
    url = installation.api_url if who == "api" else installation.ingest_url
    with psycopg.connect(installation.owner_url) as conn:
        conn.execute(
            "INSERT INTO audit_log (subject, role, tenant_id, action, resource)"
            " VALUES ('nurse.a', 'nurse', 't', 'patient.read', 'patients')"
        )
    with psycopg.connect(url, autocommit=True) as conn:
        for change in AUDIT_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(change)  # type: ignore[arg-type]
        # and nothing else lets them either: no DELETE, no TRUNCATE, no DDL
        for statement in (
            "DELETE FROM readings",
            "TRUNCATE alerts",
            "CREATE TABLE mine (x int)",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
        insert = (
            "INSERT INTO audit_log (subject, role, tenant_id, action, resource)"
            " VALUES ('x', 'nurse', 't', 'a', 'r')"
        )
        if who == "api":
            conn.execute(insert)  # the API appends, and reads back for the auditors' review
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (2,)
            # ... but it cannot touch the chain's head (only the chaining trigger does)
            for statement in (
                "SELECT * FROM audit_chain_head",
                "UPDATE audit_chain_head SET seq = 0",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)  # type: ignore[arg-type]
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(insert)
    with psycopg.connect(installation.owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (
            2 if who == "api" else 1,
        )


def test_the_owner_and_a_superuser_are_refused_by_the_trigger(
    installation: Installation, database_url: str
) -> None:
    with psycopg.connect(installation.owner_url) as conn:
        conn.execute(
            "INSERT INTO audit_log (subject, role, tenant_id, action, resource)"
            " VALUES ('nurse.a', 'nurse', 't', 'patient.read', 'patients')"
        )
    for url in (installation.owner_url, database_url):  # database_url: a superuser
        with psycopg.connect(url, autocommit=True) as conn:
            for change in AUDIT_CHANGES:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED_BY_TRIGGER):
                    conn.execute(change)  # type: ignore[arg-type]
            assert conn.execute("SELECT subject FROM audit_log").fetchall() == [("nurse.a",)]


def test_tables_of_later_migrations_are_granted_and_stray_grants_revoked(
    installation: Installation,
) -> None:
    """Every migrate run sets the privileges afresh on every table: one a later migration
    adds is covered, and a privilege granted by hand beyond the rules is taken back."""
    api_role = sql.Identifier(str(installation.roles.api))
    with psycopg.connect(installation.owner_url) as conn:
        conn.execute("CREATE TABLE later_table (id bigserial PRIMARY KEY, note text)")
        conn.execute(sql.SQL("GRANT UPDATE, DELETE ON audit_log TO {}").format(api_role))
    migrate(installation.owner_url, roles=installation.roles)
    with psycopg.connect(installation.api_url, autocommit=True) as conn:
        conn.execute("INSERT INTO later_table (note) VALUES ('a')")
        conn.execute("UPDATE later_table SET note = 'b'")
        assert conn.execute("SELECT note FROM later_table").fetchall() == [("b",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("DELETE FROM audit_log")
    with psycopg.connect(installation.ingest_url, autocommit=True) as conn:
        conn.execute("INSERT INTO later_table (note) VALUES ('c')")


def test_misconfigured_roles_are_a_clear_error(
    installation: Installation, database_url: str
) -> None:
    with pytest.raises(MigrationError, match="need roles of their own"):
        migrate(installation.owner_url, roles=RuntimeRoles(api="same_role", ingest="same_role"))
    owner = psycopg.conninfo.conninfo_to_dict(installation.owner_url)["user"]
    with pytest.raises(MigrationError, match=r"HEMHUB_DB_API_ROLE=.* is the role `hemhub migrate`"):
        migrate(installation.owner_url, roles=RuntimeRoles(api=str(owner), ingest=None))
    # a runtime role that is a member of the owner would have all the owner's rights
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(str(owner)), sql.Identifier(str(installation.roles.ingest))
            )
        )
    with pytest.raises(MigrationError, match=r"HEMHUB_DB_INGEST_ROLE=.* a member of the owner"):
        migrate(installation.owner_url, roles=installation.roles)


def test_a_missing_role_the_owner_cannot_create(database_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    owner = f"hemhub_owner_{tag}"
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE")
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {owner}')
    try:
        with pytest.raises(
            MigrationError, match=r"HEMHUB_DB_INGEST_ROLE=hemhub_nobody_.*cannot be created"
        ):
            migrate(
                _as(database_url, owner),
                roles=RuntimeRoles(api=None, ingest=f"hemhub_nobody_{tag}"),
            )
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO CURRENT_USER')
            conn.execute(f"DROP OWNED BY {owner}")
            conn.execute(f"DROP ROLE {owner}")


def test_roles_on_timescaledb(timescaledb_url: str) -> None:
    """The hypertable path: ingest's role stores readings (TimescaleDB makes the chunk),
    the API's reads them, neither alters the audit log. (The PGlite server connects every
    client as its superuser: the roles are taken with SET ROLE.)"""
    tag = uuid.uuid4().hex[:8]
    roles = RuntimeRoles(api=f"hemhub_api_{tag}", ingest=f"hemhub_ingest_{tag}")
    assert migrate(timescaledb_url, partitioning="timescaledb", roles=roles).partitioning == (
        "timescaledb"
    )
    hub = unique_hub_id()
    with psycopg.connect(timescaledb_url, autocommit=True) as conn:
        # The harness answers COPY ... FROM STDIN (how ingest stages a batch) by running
        # COPY from a file of PGlite's: that needs this role, on this harness only.
        conn.execute(
            sql.SQL("GRANT pg_read_server_files TO {}").format(sql.Identifier(str(roles.ingest)))
        )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(str(roles.ingest))))
        identity, _, patient = seeded_device(
            conn, serial="TS-ROLES", assigned_from=datetime(2025, 1, 1, tzinfo=UTC), hub_id=hub
        )
        result = store(conn, [batch(hub, bp_reading(190, 100, dev=identity))])
        assert (result.stored, result.received) == (1, 1)
        ensure_partitions(conn)  # no-op on a hypertable, allowed
        for change in AUDIT_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(change)  # type: ignore[arg-type]
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(str(roles.api))))
        assert conn.execute(
            "SELECT count(*) FROM readings WHERE patient_id = %s", (patient,)
        ).fetchone() == (1,)
        conn.execute("UPDATE alerts SET status = 'acknowledged' WHERE patient_id = %s", (patient,))
        conn.execute(
            "INSERT INTO audit_log (subject, role, tenant_id, action, resource, patient_id)"
            " VALUES ('nurse.a', 'nurse', %s, 'alert.ack', 'alerts', %s)",
            (TENANT, patient),
        )
        for change in AUDIT_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(change)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM readings")
        conn.execute("RESET ROLE")
        for change in AUDIT_CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED_BY_TRIGGER):
                conn.execute(change)  # type: ignore[arg-type]


def test_cli_migrate_takes_the_roles_from_the_environment(database_url: str) -> None:
    """`hemhub migrate` with HEMHUB_DB_API_ROLE / HEMHUB_DB_INGEST_ROLE creates the roles
    and grants them; a misconfiguration is one line on stderr, exit code 1."""
    tag = uuid.uuid4().hex[:8]
    api, ingest = f"hemhub_api_{tag}", f"hemhub_ingest_{tag}"
    env = {**os.environ, "HEMHUB_DATABASE_URL": database_url}

    def run(**roles: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hemhub.cli", "migrate"],
            cwd=ROOT,
            env=env | roles,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        done = run(HEMHUB_DB_API_ROLE=api, HEMHUB_DB_INGEST_ROLE=ingest)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(database_url) as conn:
            granted = conn.execute(
                "SELECT has_table_privilege(%s, 'audit_log', 'INSERT'),"
                " has_table_privilege(%s, 'audit_log', 'UPDATE'),"
                " has_table_privilege(%s, 'readings', 'INSERT'),"
                " has_table_privilege(%s, 'audit_log', 'INSERT'),"
                " (SELECT rolcanlogin FROM pg_roles WHERE rolname = %s)",
                (api, api, ingest, ingest, api),
            ).fetchone()
        assert granted == (True, False, True, False, False)
        bad = run(HEMHUB_DB_API_ROLE=api, HEMHUB_DB_INGEST_ROLE=api)
        assert bad.returncode == 1
        assert bad.stderr.startswith("hemhub migrate: HEMHUB_DB_API_ROLE and HEMHUB_DB_INGEST_ROLE")
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for role in (api, ingest):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f"DROP OWNED BY {role}")
                    conn.execute(f"DROP ROLE {role}")
