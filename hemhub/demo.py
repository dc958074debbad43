"""`hemhub demo`: the whole stack in one process, on embedded servers unless URLs are set.

PostgreSQL (embedded pgserver unless HEMHUB_DATABASE_URL), an MQTT broker (embedded
amqtt unless HEMHUB_MQTT_URL), the ingest worker, the API, and simulated homes: each a
real gateway with its own simulated radio and a simulated cuff, all residents
belonging to the principal `demo`. Everything the simulated cuffs measure is appended
to `<data-dir>/simulated-readings.jsonl` so the pipeline can be checked end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg

from api.app import Server, announce_stop, create_app
from api.auth import Role, ensure_demo_key
from api.demo_idp import DEMO_USERS, PRINCIPALS, demo_password
from device_drivers.simulation.home import (
    ProducedLog,
    SimulatedDevice,
    SimulatedHome,
    SimulationScenario,
)
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import DeviceProfile
from hemhub.embedded import EmbeddedBroker, EmbeddedPostgres
from hemhub.settings import Settings
from ingest import hub_fleet, inventory, registry
from ingest.fleet_common import Actor
from ingest.migrations import migrate
from ingest.worker import IngestWorker

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"
RESIDENTS = [
    "Astrid Lindqvist",
    "Bengt Karlsson",
    "Margit Olsson",
    "Sven Nyberg",
    "Ingrid Holm",
    "Gunnar Ek",
    "Karin Sjöberg",
    "Lennart Berg",
]
#: The first home, and every third after it, has a resident with high blood pressure.
HYPERTENSIVE_EVERY = 3
#: Besides the cuff, homes take turns with one more device and its programme.
EXTRA_DEVICES: list[tuple[DeviceProfile, str, str] | None] = [
    None,
    (DeviceProfile.WEIGHT_SCALE, "heart_failure", "heart_failure"),
    (DeviceProfile.PULSE_OXIMETER, "copd", "copd"),
    (DeviceProfile.GLUCOSE, "diabetic", "diabetes"),
    (DeviceProfile.DISPENSER, "skips_doses", "hypertension"),
]


@dataclass(frozen=True)
class Home:
    index: int
    hub_id: str
    resident: str
    programme: str
    scenario: SimulationScenario


def _address(home: int, device: int) -> str:
    return f"C0:FF:EE:{device:02X}:{(home + 1) // 256:02X}:{(home + 1) % 256:02X}"


def plan_homes(count: int, *, hub_prefix: str = "demo-hub", start: int = 0) -> list[Home]:
    """`count` homes; `start` offsets the numbering (device addresses and serials), so
    that two plans (two principals' homes) never share a device."""
    homes = []
    for i in range(start, start + count):
        devices = [
            SimulatedDevice(
                address=_address(i, 0),
                profile=DeviceProfile.BLOOD_PRESSURE,
                serial=f"DEMO-BP-{i + 1:05d}",
                scenario="hypertensive" if i % HYPERTENSIVE_EVERY == 0 else "normotensive",
                seed=i,
                first_after_s=2.0 + (i % 5) * 1.5,
                every_s=30.0,
            )
        ]
        programme = "hypertension"
        extra = EXTRA_DEVICES[i % len(EXTRA_DEVICES)]
        if extra is not None:
            profile, scenario, programme = extra
            devices.append(
                SimulatedDevice(
                    address=_address(i, 1),
                    profile=profile,
                    serial=f"DEMO-{profile.value[:4].upper()}-{i + 1:05d}",
                    scenario=scenario,
                    seed=i,
                    first_after_s=4.0,
                    every_s=45.0,
                    bond=profile == DeviceProfile.DISPENSER,  # the robot talks encrypted only
                )
            )
        name = RESIDENTS[i % len(RESIDENTS)] + ("" if i < len(RESIDENTS) else f" {i + 1}")
        homes.append(
            Home(
                index=i,
                hub_id=f"{hub_prefix}-{i + 1:03d}",
                resident=name,
                programme=programme,
                scenario=SimulationScenario(devices=devices),
            )
        )
    return homes


#: Who seeds the demo's fleet (recorded with every transition, like a technician).
DEMO_HMC = "hmc@demo"
#: The demo's catalogue: one product per kind of simulated device (the hub its own).
PRODUCTS: dict[str, dict[str, object]] = {
    "hub": {"kind": "hub", "manufacturer": "hemhub", "model": "Demo hub"},
    **{
        p.value: {
            "kind": p.value,
            "manufacturer": "Hemhub Simulated Devices",
            "model": f"Simulated {p.value.replace('_', ' ')}",
            # The medication robot talks encrypted only: hubs pair with it first.
            "quirks": {"bond": True} if p == DeviceProfile.DISPENSER else {},
        }
        for p in DeviceProfile
    },
}


def seed(database_url: str, homes: list[Home], tenant: str = DEMO_TENANT) -> None:
    """Register the demo principals (the demo users' two: PRINCIPALS), then `tenant`'s
    residents and fleet as a technician would, through the fleet's service functions
    (those behind the API): a catalogue, each home's hub placed at the resident's home,
    each device registered and assigned through the hub (which gets its retained
    configuration). Once per data directory."""
    with psycopg.connect(database_url) as conn:
        for principal, name in PRINCIPALS.items():
            registry.ensure_tenant(conn, principal, name)
        placed = {r[0] for r in conn.execute("SELECT id FROM hubs WHERE tenant_id = %s", (tenant,))}
        residents = {
            home.hub_id: registry.create_patient(
                conn, tenant, home.resident, programme=home.programme
            )
            for home in homes
            if home.hub_id not in placed
        }
        conn.commit()
    if residents:
        asyncio.run(
            _seed_fleet(
                database_url, tenant, [h for h in homes if h.hub_id in residents], residents
            )
        )


async def _seed_fleet(
    database_url: str, tenant: str, homes: list[Home], residents: dict[str, UUID]
) -> None:
    actor = Actor(f"hmc@{tenant}", tenant)
    started = datetime.now(UTC) - timedelta(days=30)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        products = {p["kind"]: p["id"] for p in await inventory.list_products(conn, tenant)}
        for kind, spec in PRODUCTS.items():
            if kind not in products:
                made = await inventory.create_product(conn, actor, **spec)  # type: ignore[arg-type]
                products[kind] = made["id"]
        for home in homes:
            patient_id = residents[home.hub_id]
            await hub_fleet.register_hub(
                conn, actor, home.hub_id, product_id=products["hub"], serial=home.hub_id
            )
            await hub_fleet.place_hub(
                conn, actor, home.hub_id, patient_id=patient_id, started_at=started
            )
            for device in home.scenario.devices:
                identity = device.identity()
                registered = await inventory.register_device(
                    conn,
                    actor,
                    product_id=products[device.profile.value],
                    serial=device.serial,
                    address=identity.address,
                    manufacturer=identity.manufacturer,
                    model=identity.model,
                )
                await inventory.assign_device(
                    conn,
                    actor,
                    registered["id"],
                    patient_id=patient_id,
                    hub_id=home.hub_id,
                    started_at=started,
                    reason="demo",
                )


async def run_home(
    home: Home, mqtt_url: str, data_dir: Path, produced: ProducedLog, stop: asyncio.Event
) -> None:
    """One simulated home: a radio, the resident's devices in use, and a real gateway."""
    hub_dir = data_dir / "hubs" / home.hub_id
    async with SimulatedRadio() as radio:
        simulated = SimulatedHome(radio, home.scenario, hub_dir, produced=produced)
        await simulated.start()
        config = GatewayConfig(
            hub_id=home.hub_id,
            mqtt_url=mqtt_url,
            data_dir=hub_dir,
            devices=simulated.allow_list(),
            status_interval_s=30,
        )
        gateway = HubGateway(config, radio.bleak_backends())
        try:
            await gateway.run(stop)
        except Exception:
            log.exception("simulated home %s failed", home.hub_id)
        finally:
            await simulated.stop()


#: Seconds the API gives open responses (live streams) to finish when stopping; then
#: they are cut, so that Ctrl-C stops the demo within seconds with browsers attached.
GRACEFUL_SHUTDOWN_S = 1


ROLE_WORDS = {Role.NURSE: "nurse", Role.HMC: "HMC technician", Role.ADMIN: "admin"}


def banner(settings: Settings, homes: int, password: str) -> str:
    """What `hemhub demo` prints last: where to go, who to sign in as, and the password."""
    base = f"http://{settings.api_host}:{settings.api_port}"
    width = max(len(u.login) for u in DEMO_USERS)
    users = "\n".join(
        f"      {u.login:<{width}}  {u.name}, {ROLE_WORDS[u.role]}, {PRINCIPALS[u.tenant]}"
        for u in DEMO_USERS
    )
    return (
        f"\nhemhub demo is running with {homes} simulated homes.\n\n"
        f"  Open {base}/ in a browser and sign in (Logga in) as a demo user:\n"
        f"{users}\n"
        f"  Password (every demo user): {password}\n\n"
        f"  API documentation: {base}/docs\n"
        f"  A token for scripts: .venv/bin/hemhub token --role nurse --tenant {DEMO_TENANT}"
        f" --data-dir '{settings.data_dir}'\n"
        f"  Log: {settings.data_dir / LOG_FILE}\n"
        f"  Simulated measurements: {settings.data_dir / 'simulated-readings.jsonl'}\n\n"
        "Ctrl-C stops everything.\n"
    )


async def _serve(settings: Settings, homes: list[Home], database_url: str, mqtt_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    worker = IngestWorker(database_url, mqtt_url, client_id="hemhub-demo-ingest")
    worker_thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
    worker_thread.start()

    # The demo verifies the tokens of its own identity provider with its own key:
    # allowed here, and only here. The API runs the hub link: the hubs' retained
    # configurations reach them.
    api_settings = settings.model_copy(
        update={
            "database_url": database_url,
            "mqtt_url": mqtt_url,
            "jwt_allow_self_made_key": True,
            "demo_idp": True,
        }
    )
    password = demo_password(api_settings)
    app = create_app(api_settings)
    server = Server(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    api_task = asyncio.create_task(server.serve())

    produced = ProducedLog(settings.data_dir / "simulated-readings.jsonl")
    home_tasks = [
        asyncio.create_task(run_home(h, mqtt_url, settings.data_dir, produced, stop)) for h in homes
    ]
    # The banner last: once the API answers, so that the URL it names works.
    while not server.started and not api_task.done() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    if server.started:
        print(banner(settings, len(homes), password), flush=True)
    try:
        await stop.wait()
    finally:
        _console_quiet_from_now()
        print("stopping…", flush=True)
        announce_stop(app)  # live streams end now: the API need not wait for browsers
        server.should_exit = True
        await asyncio.gather(*home_tasks, api_task, return_exceptions=True)
        worker.stop()
        await asyncio.to_thread(worker_thread.join, 15)
        produced.close()


#: INFO and up go to this file under the data directory; the console gets warnings only.
LOG_FILE = "demo.log"
#: Warnings that are normal in a demo on the embedded servers (the file keeps them):
#: amqtt speaks MQTT 3.1.1 only (ingest falls back to it), and hands hubs other hubs'
#: retained configurations (each hub checks the hub id and ignores them); the demo's
#: self-made signing key is the point of a demo (the banner says it is one).
NORMAL_IN_DEMO = (
    ("ingest.worker", "ingest.mqtt_fallback"),
    ("ingest.worker", "ingest.mqtt_disconnected reason='Normal disconnection'"),
    ("ingest.worker", "ingest.dead_letter topic=hemhub/v1/hubs/"),
    ("gateway.hub", "ignores a configuration: configuration is for hub"),
    ("api.app", "SECURITY: tokens are verified with a self-made signing key"),
)


class _DemoConsole(logging.Filter):
    """The console's filter: warnings and errors, less those normal in a demo; once
    stopping, errors only (connections closing are expected then)."""

    stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.stopping:
            return record.levelno >= logging.ERROR
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        return not any(
            record.name.startswith(name) and text in message for name, text in NORMAL_IN_DEMO
        )


_console_filter = _DemoConsole()


def _console_quiet_from_now() -> None:
    _console_filter.stopping = True


def _quiet_logging(data_dir: Path) -> None:
    """Everything from INFO to <data-dir>/demo.log; warnings and errors on the console."""
    root = logging.getLogger()
    console = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    formatter = console[0].formatter if console else None
    for handler in console:
        handler.setLevel(logging.WARNING)
        handler.addFilter(_console_filter)
    to_file = logging.FileHandler(data_dir / LOG_FILE, encoding="utf-8")
    to_file.setFormatter(
        formatter or logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    to_file.setLevel(logging.INFO)
    root.addHandler(to_file)
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)


def run_demo(settings: Settings, homes: int = 5) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir})
    _quiet_logging(data_dir)
    ensure_demo_key(settings.demo_key_file)
    plan = plan_homes(homes)
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if not database_url:
            database_url = stack.enter_context(EmbeddedPostgres(data_dir / "postgres"))
        mqtt_url = settings.mqtt_url
        if not mqtt_url:
            mqtt_url = stack.enter_context(EmbeddedBroker(data_dir / "broker"))
        report = migrate(database_url)
        log.info("database ready; readings partitioning: %s", report.partitioning)
        seed(database_url, plan)
        asyncio.run(_serve(settings, plan, database_url, mqtt_url))
    print("stopped.", flush=True)
    return 0
