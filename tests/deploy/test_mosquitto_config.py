"""The shipped Mosquitto configuration and ACL, proven on a real Mosquitto process.

One broker is started for this module from `deploy/mosquitto/`: the shipped
`mosquitto.conf` with only its listener lines (a free 127.0.0.1 port each) and file
paths (a temporary directory) replaced, and the shipped ACL as is, so the tests prove
the production files, not a copy of them. The PKI is throwaway: a server CA and a
certificate for 127.0.0.1/localhost, a CA for hub client certificates, and an
unrelated CA. Users: hubs `hub-a`, `hub-b` (passwords, on the hub listener) and `hub-c`
(certificate), `hemhub-ingest` and `hemhub-backend` (passwords, on the services listener).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import pwd
import queue
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.credentials import BrokerCredentials, InsecureCredentialsError
from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from hemhub.contract import (
    SUBSCRIBE_READINGS,
    SUBSCRIBE_RESULTS,
    ReadingBatch,
    Receipt,
    topic_config,
    topic_readings,
    topic_receipts,
    topic_results,
    topic_status,
)
from tests.factories import bp_reading

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
SHIPPED_CONF = DEPLOY_DIR / "mosquitto.conf"
SHIPPED_ACL = DEPLOY_DIR / "hemhub.acl"

# What render_config replaces in the shipped configuration (nothing else changes).
ETC = "/etc/mosquitto/"
DATA = "/var/lib/mosquitto/"
PASSWORD_LISTENER = "listener 8883"
CERTIFICATE_LISTENER = "listener 8884"
SERVICE_LISTENER = "listener 8885"
INGEST, BACKEND = "hemhub-ingest", "hemhub-backend"
SERVICES = frozenset({INGEST, BACKEND})


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- PKI


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        if key_path is not None:
            key_path.write_bytes(
                self.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(ca: Issued, common_name: str, *, server: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(common_name, ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


# ---------------------------------------------------------------- passwords


def hashed_password_line(user: str, password: str) -> str:
    """A password-file line in Mosquitto 2's own format (PBKDF2-SHA512, 101 rounds)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """The way an operator does it (mosquitto_passwd), or the same format by hand."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        path.write_text("".join(hashed_password_line(u, p) + "\n" for u, p in users.items()))
    else:
        path.write_text("")
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True)
    path.chmod(0o600)


# ---------------------------------------------------------------- the broker


@dataclass
class Broker:
    """A running Mosquitto: TLS listeners on `port` (hubs with passwords), `cert_port`
    (hubs with certificates) and `service_port` (ingest, backend)."""

    root: Path
    port: int
    cert_port: int
    service_port: int
    process: subprocess.Popen[bytes]
    passwords: dict[str, str]
    ca_file: Path
    other_ca_file: Path
    hub_ca: Issued = field(repr=False)
    other_ca: Issued = field(repr=False)

    @property
    def log(self) -> str:
        return (self.root / "mosquitto.log").read_text(errors="replace")

    def client_certificate(self, common_name: str, *, foreign: bool = False) -> tuple[str, str]:
        """A hub certificate (CN = hub id) and its key: from the hub CA, or another CA."""
        issued = issue(self.other_ca if foreign else self.hub_ca, common_name, server=False)
        name = f"{common_name}-{'foreign' if foreign else 'hub'}"
        cert, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        issued.write(cert, key)
        return str(cert), str(key)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def render_config(port: int, cert_port: int, service_port: int, root: Path) -> str:
    """The shipped mosquitto.conf with listeners and file paths moved to `root`."""
    text = SHIPPED_CONF.read_text()
    for shipped, replacement in (
        (PASSWORD_LISTENER, f"listener {port} 127.0.0.1"),
        (CERTIFICATE_LISTENER, f"listener {cert_port} 127.0.0.1"),
        (SERVICE_LISTENER, f"listener {service_port} 127.0.0.1"),
    ):
        text, n = re.subn(rf"^{shipped}\s*$", replacement, text, flags=re.MULTILINE)
        assert n == 1, f"expected one '{shipped}' line in {SHIPPED_CONF}"
    for shipped, replacement in ((ETC, f"{root}/etc/"), (DATA, f"{root}/data/")):
        assert shipped in text, f"expected {shipped} in {SHIPPED_CONF}"
        text = text.replace(shipped, replacement)
    leftover = re.findall(
        r"^\s*listener\s(?!.*127\.0\.0\.1).*$|(?<!\S)/(?:etc|var)/\S*", text, re.M
    )
    assert not leftover, f"unrendered lines in {SHIPPED_CONF}: {leftover}"
    return text


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}:\n{log.read_text()}")


def start_broker(binary: str, passwords: dict[str, str]) -> Broker:
    # Not under pytest's tmp dir: as root, Mosquitto drops to the `mosquitto` user (as
    # in production), which must be able to reach and read its files.
    root = Path(tempfile.mkdtemp(prefix="hemhub-mosquitto-"))
    etc, data, certs = root / "etc", root / "data", root / "etc" / "certs"
    certs.mkdir(parents=True)
    data.mkdir()

    server_ca = make_ca("hemhub test server CA")
    server_ca.write(certs / "ca.crt")
    issue(server_ca, "localhost", server=True).write(certs / "server.crt", certs / "server.key")
    hub_ca = make_ca("hemhub test hub CA")
    hub_ca.write(certs / "hub-ca.crt")
    other_ca = make_ca("some other CA")
    other_ca.write(root / "other-ca.crt")
    hubs = {u: p for u, p in passwords.items() if u not in SERVICES}
    services = {u: p for u, p in passwords.items() if u in SERVICES}
    write_password_file(etc / "hemhub-hubs.passwd", hubs)
    write_password_file(etc / "hemhub-services.passwd", services)
    shutil.copyfile(SHIPPED_ACL, etc / "hemhub.acl")

    port, cert_port, service_port = free_port(), free_port(), free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(render_config(port, cert_port, service_port, root))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("mosquitto")
        except KeyError:
            owner = pwd.getpwnam("nobody")
        for path in [root, *root.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    log = root / "mosquitto.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    broker = Broker(
        root=root,
        port=port,
        cert_port=cert_port,
        service_port=service_port,
        process=process,
        passwords=passwords,
        ca_file=certs / "ca.crt",
        other_ca_file=root / "other-ca.crt",
        hub_ca=hub_ca,
        other_ca=other_ca,
    )
    try:
        _wait_listening(port, process, log)
        _wait_listening(cert_port, process, log)
        _wait_listening(service_port, process, log)
    except BaseException:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return broker


# ---------------------------------------------------------------- clients and tests

V311 = MQTTProtocolVersion.MQTTv311
V5 = MQTTProtocolVersion.MQTTv5
SHARED_READINGS = f"$share/hemhub-ingest/{SUBSCRIBE_READINGS}"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("HEMHUB_REQUIRE_REAL_SERVICES") == "1":
            pytest.fail(
                "HEMHUB_REQUIRE_REAL_SERVICES=1 but mosquitto is not installed on this machine"
            )
        pytest.skip("mosquitto is not installed on this machine")
    passwords = {u: uuid.uuid4().hex for u in ("hub-a", "hub-b", INGEST, BACKEND)}
    started = start_broker(binary, passwords)
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.root, ignore_errors=True)


class Client:
    """A paho client that records what the broker answers."""

    def __init__(
        self,
        broker: Broker,
        user: str | None,
        *,
        password: str | None = None,
        protocol: MQTTProtocolVersion = V311,
        client_id: str | None = None,
        clean_session: bool = True,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        v5 = protocol == V5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id if client_id is not None else (user or ""),
            protocol=protocol,
            clean_session=None if v5 else clean_session,
        )
        if user is not None:
            if password is None:
                password = broker.passwords.get(user)
            self.client.username_pw_set(user, password)
        self.client.tls_set(
            ca_certs=ca_file or str(broker.ca_file),
            certfile=cert[0] if cert else None,
            keyfile=cert[1] if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self.client.max_inflight_messages_set(100)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.disconnected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        # Each kind of client on its own listener, unless a test says otherwise.
        default = broker.service_port if user in SERVICES else broker.port
        self.port = port or (broker.cert_port if cert else default)
        self.v5_resume = v5 and not clean_session

    def connect(self, timeout: float = 5.0) -> ReasonCode | None:
        """The CONNACK's reason code, or None when the connection died before one."""
        if self.v5_resume:
            self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=False)
        else:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            closed = self.disconnected.is_set()
            try:
                return self.connack.get(timeout=0.05)
            except queue.Empty:
                if closed:  # and no CONNACK came before the connection closed
                    return None
        return None

    def subscribe(self, topic: str) -> ReasonCode:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)[0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"no PUBACK for {topic}"
        deadline = time.monotonic() + 1  # on_publish may run just after the flag is set
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks.pop(info.mid)

    def received(self, want: int = 1, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        got: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(got) < want and (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


Clients = Callable[..., Client]


@pytest.fixture
def clients(broker: Broker) -> Iterator[Clients]:
    """A factory of connected clients (arguments as Client's), all closed after the test."""
    made: list[Client] = []

    def connect(user: str | None, **kwargs: Any) -> Client:
        client = Client(broker, user, **kwargs)
        made.append(client)
        rc = client.connect()
        assert rc is not None and not rc.is_failure, f"{user} refused: {rc}\n{broker.log}"
        return client

    yield connect
    for client in made:
        client.close()


def test_hub_publishes_its_readings_to_ingest(clients: Clients) -> None:
    ingest = clients(INGEST)
    assert not ingest.subscribe(SUBSCRIBE_READINGS).is_failure
    hub = clients("hub-a")

    assert hub.publish(topic_readings("hub-a"), b"reading-1").value == 0
    hub.publish(topic_status("hub-a"), b"online", retain=True)

    [msg] = ingest.received()
    assert (msg.topic, msg.payload, msg.qos) == (topic_readings("hub-a"), b"reading-1", 1)
    hub.publish(topic_status("hub-a"), b"", retain=True)  # leave nothing retained


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v3.1.1", "v5"])
def test_hub_cannot_publish_as_another_hub(clients: Clients, protocol: MQTTProtocolVersion) -> None:
    ingest = clients(INGEST)
    ingest.subscribe(SUBSCRIBE_READINGS)
    ingest.subscribe(topic_status("+"))

    # Mosquitto 2.0 answers a denied publish and then closes the connection (v3.1.1
    # and v5 alike), so each attempt gets a client of its own.
    forged = [
        clients(user, protocol=protocol, client_id=f"{user}-forger-{i}").publish(topic, b"forged")
        for i, (user, topic) in enumerate(
            [
                ("hub-a", topic_readings("hub-b")),
                ("hub-a", topic_status("hub-b")),
                (BACKEND, topic_readings("hub-b")),  # a service user is no hub either
            ]
        )
    ]
    clients("hub-a").publish(topic_readings("hub-a"), b"sentinel")

    # v3.1.1 cannot say no: the PUBACK says success and the message is dropped (a hub
    # whose user name is not its hub id loses its readings). v5: "not authorized".
    assert [rc.value for rc in forged] == [0x87 if protocol == V5 else 0x00] * 3
    # Mosquitto routes a message before acknowledging it, so anything forged that got
    # through would have arrived before the sentinel.
    [first] = ingest.received()
    assert (first.topic, first.payload) == (topic_readings("hub-a"), b"sentinel")


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v3.1.1", "v5"])
def test_hub_cannot_take_over_another_hubs_session(
    broker: Broker, clients: Clients, protocol: MQTTProtocolVersion
) -> None:
    ingest = clients(INGEST)
    ingest.subscribe(SUBSCRIBE_READINGS)
    backend = clients(BACKEND)
    hub_a = clients("hub-a", protocol=protocol)  # client id hub-a
    assert not hub_a.subscribe(topic_config("hub-a")).is_failure

    # hub-b, with its own valid password, claims hub-a's client id. Without
    # use_username_as_clientid the broker would close hub-a's connection and hand its
    # persistent session (queued config and commands) to hub-b.
    intruder = clients("hub-b", protocol=protocol, client_id="hub-a")
    intruder.subscribe(topic_config("hub-a"))
    time.sleep(0.3)
    assert not hub_a.disconnected.is_set(), f"hub-a was kicked off:\n{broker.log}"
    backend.publish(topic_config("hub-a"), b"config for hub-a")
    [got] = hub_a.received()
    assert got.payload == b"config for hub-a"
    assert intruder.received(timeout=0.5) == []
    assert hub_a.publish(topic_readings("hub-a"), b"hub-a still here").value == 0
    [reading] = ingest.received()
    assert reading.payload == b"hub-a still here"

    # The intruder's id was forced to hub-b: hub-b logging in under any client id takes
    # over that session, never hub-a's.
    clients("hub-b", protocol=protocol, client_id="anything-else")
    assert intruder.disconnected.wait(timeout=5), "the intruder ran as hub-b's session"
    assert not hub_a.disconnected.is_set()


def test_hubs_and_services_log_in_only_on_their_own_listeners(broker: Broker) -> None:
    for user, port in (
        ("hub-a", broker.service_port),  # the services listener keeps client ids as given
        (INGEST, broker.port),
        (BACKEND, broker.port),
    ):
        for protocol in (V311, V5):
            client = Client(broker, user, protocol=protocol, client_id=f"{user}-x", port=port)
            try:
                rc = client.connect()
            finally:
                client.close()
            assert rc is not None and rc.is_failure, (user, port, protocol, rc)


def test_hub_reads_only_its_own_config(clients: Clients) -> None:
    backend = clients(BACKEND)
    for hub_id in ("hub-a", "hub-b"):
        backend.publish(topic_config(hub_id), f"config of {hub_id}".encode(), retain=True)
    hub = clients("hub-a")

    # acl_file never refuses a SUBSCRIBE (Mosquitto 2.0 grants it and checks each
    # delivery); a broker that refused it (0x80, or v5's 0x87) would do as well.
    assert hub.subscribe(topic_config("hub-b")).value in (0x00, 0x01, 0x80, 0x87)
    assert hub.subscribe("hemhub/v1/hubs/+/config").value in (0x00, 0x01, 0x80, 0x87)
    assert not hub.subscribe(topic_config("hub-a")).is_failure
    backend.publish(topic_config("hub-b"), b"new config of hub-b")
    backend.publish(topic_config("hub-a"), b"new config of hub-a")

    got: list[mqtt.MQTTMessage] = []
    while not any(m.payload == b"new config of hub-a" for m in got):
        [message] = hub.received()
        got.append(message)
    assert {(m.topic, m.payload, bool(m.retain)) for m in got} == {
        (topic_config("hub-a"), b"config of hub-a", True),
        (topic_config("hub-a"), b"new config of hub-a", False),
    }
    backend.publish(topic_config("hub-a"), b"", retain=True)
    backend.publish(topic_config("hub-b"), b"", retain=True)


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("hub-a", "wrong"), ("nobody", "secret"), ("hub-a", "")],
    ids=["anonymous", "wrong-password", "unknown-user", "empty-password"],
)
def test_unauthenticated_connections_are_refused(
    broker: Broker, user: str | None, password: str | None
) -> None:
    for protocol in (V311, V5):
        client = Client(broker, user, password=password, protocol=protocol, client_id="x")
        try:
            rc = client.connect()
        finally:
            client.close()
        assert rc is not None and rc.is_failure, (protocol, rc)


def test_tls_server_certificate_is_verified(broker: Broker, clients: Clients) -> None:
    clients("hub-a")  # verified against the right CA (the default of Client)

    stranger = Client(broker, "hub-a", ca_file=str(broker.other_ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        stranger.connect()


def test_ingest_shared_subscription_receives_every_hub(clients: Clients) -> None:
    workers = [clients(INGEST, protocol=V5, client_id=f"ingest-{i}") for i in range(2)]
    for worker in workers:
        assert not worker.subscribe(SHARED_READINGS).is_failure
        assert not worker.subscribe(f"$share/hemhub-ingest/{topic_status('+')}").is_failure
    hub_a, hub_b = clients("hub-a"), clients("hub-b")

    sent = set()
    for i in range(20):
        for hub_id, hub in (("hub-a", hub_a), ("hub-b", hub_b)):
            hub.publish(topic_readings(hub_id), f"{hub_id}-{i}".encode())
            sent.add((topic_readings(hub_id), f"{hub_id}-{i}".encode()))
    hub_b.publish(topic_status("hub-b"), b"online", retain=True)
    sent.add((topic_status("hub-b"), b"online"))

    got: list[mqtt.MQTTMessage] = []
    deadline = time.monotonic() + 5
    while len(got) < len(sent) and time.monotonic() < deadline:
        for worker in workers:
            got += worker.received(want=len(sent), timeout=0.05)
    hub_b.publish(topic_status("hub-b"), b"", retain=True)
    # Each message went to exactly one worker of the group.
    assert sorted((m.topic, m.payload) for m in got) == sorted(sent)


def test_burst_is_queued_whole_for_a_disconnected_ingest_session(clients: Clients) -> None:
    count = 5000
    client_id = f"ingest-burst-{uuid.uuid4().hex[:6]}"
    ingest = clients(INGEST, client_id=client_id, clean_session=False)
    assert not ingest.subscribe(SUBSCRIBE_READINGS).is_failure
    ingest.close()

    hub = clients("hub-a")
    infos = [hub.client.publish(topic_readings("hub-a"), str(i), qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(timeout=20)
    assert all(info.is_published() for info in infos)

    ingest = clients(INGEST, client_id=client_id, clean_session=False)
    got = {int(m.payload) for m in ingest.received(want=count, timeout=15)}
    # Mosquitto's default max_queued_messages (1000) would have dropped ~4,000.
    assert len(got) == count, f"{count - len(got)} of {count} queued messages lost"


def test_certificate_hub_is_its_certificates_common_name(broker: Broker, clients: Clients) -> None:
    ingest = clients(INGEST)
    ingest.subscribe(SUBSCRIBE_READINGS)
    hub_a = clients("hub-a")  # a password hub, client id hub-a
    cert = broker.client_certificate("hub-c")
    # hub-c logs in with its certificate alone, claiming hub-a's user name and client id.
    hub_c = clients("hub-a", password="", client_id="hub-a", cert=cert)

    assert hub_c.publish(topic_readings("hub-c"), b"from hub-c").value == 0
    [first] = ingest.received()
    assert (first.topic, first.payload) == (topic_readings("hub-c"), b"from hub-c")
    # Its client id was forced to hub-c too: hub-a's session was not taken over.
    assert not hub_a.disconnected.is_set()

    clients(None, client_id="hub-a", cert=cert).publish(topic_readings("hub-a"), b"forged")
    hub_a.publish(topic_readings("hub-a"), b"sentinel")
    [second] = ingest.received()
    assert (second.topic, second.payload) == (topic_readings("hub-a"), b"sentinel")

    # No certificate, or one from another CA: no session on that listener.
    for other in (None, broker.client_certificate("hub-c", foreign=True)):
        client = Client(broker, "hub-c", password="x", client_id="hub-c", cert=other)
        client.port = broker.cert_port
        try:
            rc = client.connect(timeout=2)
        except (ssl.SSLError, ConnectionError):
            rc = None
        finally:
            client.close()
        assert rc is None or rc.is_failure, rc


def test_oversized_packet_is_refused_not_acknowledged(clients: Clients) -> None:
    ingest = clients(INGEST)
    ingest.subscribe(SUBSCRIBE_READINGS)
    hub = clients("hub-a")

    # The largest valid batch passes; anything bigger costs the sender its connection
    # and no PUBACK, so a hub keeps it instead of losing it (message_size_limit would
    # acknowledge it to a v3.1.1 hub and drop it).
    assert hub.publish(topic_readings("hub-a"), b"x" * (5 << 20)).value == 0
    # 5 MiB through TLS to a Python client: generous on a loaded machine.
    assert len(ingest.received(timeout=60)[0].payload) == 5 << 20
    info = hub.client.publish(topic_readings("hub-a"), b"x" * (9 << 20), qos=1)
    assert hub.disconnected.wait(timeout=5)
    assert not info.is_published()
    assert ingest.received(timeout=0.5) == []


def _gateway_publishes(
    clients: Clients, hub_id: str, mqtt_url: str, credentials: BrokerCredentials, tmp: Path
) -> None:
    ingest = clients(INGEST)
    assert not ingest.subscribe(SUBSCRIBE_READINGS).is_failure
    box = Outbox(tmp / f"{hub_id}.sqlite3")
    box.add(bp_reading(171, 99))
    publisher = OutboxPublisher(box, hub_id=hub_id, mqtt_url=mqtt_url, credentials=credentials)
    publisher.start()
    try:
        [msg] = ingest.received()
        batch = ReadingBatch.model_validate_json(msg.payload)
        assert batch.hub_id == hub_id
        deadline = time.monotonic() + 10
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (box.depth(), box.awaiting_receipt()) == (0, 1), "sent after the PUBACK"
        receipt = Receipt(
            hub_id=hub_id, at=dt.datetime.now(dt.UTC), stored=[batch.readings[0].idempotency_key]
        )
        assert ingest.publish(topic_receipts(hub_id), receipt.model_dump_json().encode()).value == 0
        while box.awaiting_receipt() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.awaiting_receipt() == 0, "forgotten on its receipt, through the ACL"
    finally:
        publisher.stop()
        box.close()


def test_gateway_over_tls_with_its_password_file(
    broker: Broker, clients: Clients, tmp_path: Path
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(broker.passwords["hub-a"])
    secret.chmod(0o600)
    credentials = BrokerCredentials(
        username="hub-a", password_file=secret, ca_file=str(broker.ca_file)
    )
    _gateway_publishes(clients, "hub-a", f"mqtts://127.0.0.1:{broker.port}", credentials, tmp_path)
    secret.chmod(0o644)
    with pytest.raises(InsecureCredentialsError):
        credentials.password()


def test_gateway_over_tls_with_a_client_certificate(
    broker: Broker, clients: Clients, tmp_path: Path
) -> None:
    cert, key = broker.client_certificate("hub-c")
    Path(key).chmod(0o600)
    credentials = BrokerCredentials(ca_file=str(broker.ca_file), cert_file=cert, key_file=key)
    _gateway_publishes(
        clients, "hub-c", f"mqtts://127.0.0.1:{broker.cert_port}", credentials, tmp_path
    )


def test_hub_reads_only_its_own_receipts_and_only_ingest_writes_them(clients: Clients) -> None:
    # A hub or the backend forging a receipt (to make a hub forget unstored readings):
    # v5 says "not authorized" (and Mosquitto closes the connection). First, since a
    # hub's client id is its user name: a second hub-a client takes over the session.
    forged = [
        clients(user, protocol=V5, client_id=f"{user}-receipt-forger-{i}").publish(
            topic_receipts(target), b"forged"
        )
        for i, (user, target) in enumerate(
            [("hub-a", "hub-a"), ("hub-b", "hub-a"), (BACKEND, "hub-a")]
        )
    ]
    assert [rc.value for rc in forged] == [0x87] * 3
    hub_a = clients("hub-a")
    assert hub_a.subscribe(topic_receipts("hub-b")).value in (0x00, 0x01, 0x80, 0x87)
    assert not hub_a.subscribe(topic_receipts("hub-a")).is_failure
    ingest = clients(INGEST)
    assert ingest.publish(topic_receipts("hub-b"), b"for hub-b").value == 0
    assert ingest.publish(topic_receipts("hub-a"), b"for hub-a").value == 0
    [got] = hub_a.received()
    assert (got.topic, got.payload) == (topic_receipts("hub-a"), b"for hub-a")
    assert hub_a.received(timeout=0.5) == []


def test_hub_writes_only_its_own_results_and_only_ingest_reads_them(clients: Clients) -> None:
    # A hub reporting a wipe for another hub (to close that hub's command unfinished), or
    # the backend forging one: v5 says "not authorized".
    forged = [
        clients(user, protocol=V5, client_id=f"{user}-result-forger-{i}").publish(
            topic_results(target), b"forged"
        )
        for i, (user, target) in enumerate([("hub-b", "hub-a"), (BACKEND, "hub-a")])
    ]
    assert [rc.value for rc in forged] == [0x87] * 2
    ingest = clients(INGEST)
    assert not ingest.subscribe(SUBSCRIBE_RESULTS).is_failure
    backend = clients(BACKEND)
    assert backend.subscribe(SUBSCRIBE_RESULTS).value in (0x00, 0x01, 0x80, 0x87)
    hub_b = clients("hub-b")
    assert hub_b.subscribe(SUBSCRIBE_RESULTS).value in (0x00, 0x01, 0x80, 0x87)
    hub_a = clients("hub-a")
    assert hub_a.publish(topic_results("hub-a"), b"wiped").value == 0
    [got] = ingest.received()
    assert (got.topic, got.payload, got.qos) == (topic_results("hub-a"), b"wiped", 1)
    assert backend.received(timeout=0.5) == []
    assert hub_b.received(timeout=0.5) == []
