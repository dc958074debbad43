"""Browser tests: Debian's Chromium driven by Playwright against a real `hemhub api` process.

Fixtures (the web contract, docs/ui.md):
- `web_stack`: a fresh migrated database on the real PostgreSQL, the real Mosquitto, a
  `hemhub api` process with the demo identity provider, two principals ("demo" and
  "demo-b") seeded with homes as `hemhub demo` seeds them (hub ids of this test's own), and
  an ingest worker (in a thread) storing what those hubs publish. `web_stack.api` stops
  and restarts the API process (same port).
- `browser_page`: a Playwright page in /usr/bin/chromium, headless; Playwright never
  downloads a browser. A failing test leaves a screenshot in test-results/<test>.png.
- `sign_in(page, user)`: signs in through the demo provider's page, as a real user
  would, with user "nurse-a", "hmc-a", "nurse-b", "hmc-b" or "admin".

Without /usr/bin/chromium the tests skip saying why, except under CI
(`HEMHUB_REQUIRE_BROWSER=1`, set by .ci/run after installing it), where they fail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.demo_idp import DEMO_USERS, DemoUser
from hemhub.contract import topic_readings, topic_status
from hemhub.demo import Home, plan_homes, seed
from hemhub.embedded import free_port
from ingest.migrations import migrate
from ingest.worker import IngestWorker
from tests.factories import unique_hub_id

CHROMIUM = Path(os.environ.get("HEMHUB_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("HEMHUB_REQUIRE_BROWSER") == "1"
#: Flags for a headless Chromium that never reaches out (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULTS_DIR = Path(os.environ.get("HEMHUB_TEST_RESULTS", "test-results"))
DEMO_PASSWORD = "demo-password-for-tests"
#: Homes per principal in the stack (each a resident with a hub and a cuff, and more).
HOMES_PER_PRINCIPAL = 3


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if REQUIRE_BROWSER:
        pytest.fail(f"HEMHUB_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    # Each phase's report on the item, so that fixtures can tell a failed test at teardown.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


# --- the browser -------------------------------------------------------------------------


# Per module, not per session: Playwright's sync API keeps its own event loop running
# while it lives, and an asyncio test that runs after it in the same process (another
# collection order, a -k selection) would fail with "cannot be called from a running
# event loop". A launch costs about a second.
@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (own context: own storage) at 1280x800; screenshot on failure."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.console_messages_seen = console  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        failed = any(
            getattr(request.node, f"report_{when}", None) is not None
            and getattr(request.node, f"report_{when}").failed
            for when in ("setup", "call")
        )
        if failed:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            try:
                page.screenshot(path=str(RESULTS_DIR / f"{name}.png"), full_page=True)
                (RESULTS_DIR / f"{name}.console.txt").write_text("\n".join(console))
            except Exception as exc:  # the page may be gone; the test's own error matters
                print(f"screenshot of {name} failed: {exc}", file=sys.stderr)
        context.close()


# --- the stack ---------------------------------------------------------------------------


class ApiProcess:
    """A real `hemhub api` process on a fixed port: start, stop, start again."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def start(self, within_s: float = 60.0) -> None:
        self.launch()
        self.wait_up(within_s)

    def launch(self) -> None:
        """Start the process without waiting for it (it imports for seconds)."""
        assert self.proc is None or self.proc.poll() is not None, "the API already runs"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hemhub.cli", "api"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_up(self, within_s: float = 60.0) -> None:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + within_s
        while True:
            assert self.proc.poll() is None, f"hemhub api exited:\n{self.log_tail()}"
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"API not up in {within_s} s:\n{self.log_tail()}"
            time.sleep(0.2)

    def stop(self, within_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"hemhub api did not stop in {within_s} s") from None


@dataclass
class WebUser:
    login: str
    password: str
    sub: str
    name: str
    role: str
    tenant: str


@dataclass
class WebStack:
    base_url: str
    database_url: str
    mqtt_url: str
    users: dict[str, WebUser]
    #: The seeded homes per principal ("demo", "demo-b"), as hemhub.demo plans them.
    homes: dict[str, list[Home]]
    data_dir: Path
    api: ApiProcess
    hub_ids: list[str] = field(default_factory=list)


def _web_user(user: DemoUser) -> WebUser:
    return WebUser(user.login, DEMO_PASSWORD, user.sub, user.name, user.role.value, user.tenant)


def _ingest(database_url: str, mqtt_url: str, hubs: list[str]) -> tuple[IngestWorker, Any]:
    topics = tuple(t for h in hubs for t in (topic_readings(h), topic_status(h)))
    worker = IngestWorker(database_url, mqtt_url, client_id=f"ingest-{hubs[0]}", topics=topics)
    thread = threading.Thread(target=worker.run, name="web-ingest", daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    return worker, thread


@pytest.fixture
def web_stack(database_url: str, mqtt_url: str, tmp_path: Path) -> Iterator[WebStack]:
    port = free_port()
    data_dir = tmp_path / "hemhub"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMHUB_")}
    env.update(
        {
            "HEMHUB_DATABASE_URL": database_url,
            "HEMHUB_MQTT_URL": mqtt_url,
            "HEMHUB_API_PORT": str(port),
            "HEMHUB_DATA_DIR": str(data_dir),
            "HEMHUB_JWT_ALLOW_SELF_MADE_KEY": "1",
            "HEMHUB_DEMO_IDP": "1",
            "HEMHUB_DEMO_PASSWORD": DEMO_PASSWORD,
            # The shared broker: no retained configurations left behind for these hubs.
            "HEMHUB_API_RUNS_HUB_LINK": "0",
        }
    )
    api = ApiProcess(env, port, tmp_path / "api.log")
    # The API process imports while the database is migrated and seeded (it opens its
    # pool lazily and answers /healthz without the database).
    api.launch()
    try:
        migrate(database_url)
        yield from _seeded_stack(database_url, mqtt_url, data_dir, api)
    finally:
        api.stop()


def _seeded_stack(
    database_url: str, mqtt_url: str, data_dir: Path, api: ApiProcess
) -> Iterator[WebStack]:
    prefix = unique_hub_id("web")
    homes = {
        "demo": plan_homes(HOMES_PER_PRINCIPAL, hub_prefix=f"{prefix}-a"),
        "demo-b": plan_homes(
            HOMES_PER_PRINCIPAL, hub_prefix=f"{prefix}-b", start=HOMES_PER_PRINCIPAL
        ),
    }
    # In a thread of its own: seeding runs asyncio, and Playwright's sync API keeps an
    # event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        for tenant, planned in homes.items():
            pool.submit(seed, database_url, planned, tenant=tenant).result()
    hub_ids = [h.hub_id for planned in homes.values() for h in planned]
    worker, thread = _ingest(database_url, mqtt_url, hub_ids)
    try:
        api.wait_up()
        yield WebStack(
            base_url=api.base_url,
            database_url=database_url,
            mqtt_url=mqtt_url,
            users={u.login: _web_user(u) for u in DEMO_USERS},
            homes=homes,
            data_dir=data_dir,
            api=api,
            hub_ids=hub_ids,
        )
    finally:
        worker.stop()
        thread.join(timeout=20)


@pytest.fixture
def sign_in(web_stack: WebStack) -> Callable[[Any, str | WebUser], WebUser]:
    """sign_in(page, "nurse-a"): through the app's sign-in button and the demo provider's
    page (pick the user, type the password), back to the app signed in."""

    def do(page: Any, user: str | WebUser) -> WebUser:
        who = web_stack.users[user] if isinstance(user, str) else user
        page.goto(web_stack.base_url + "/")
        page.locator("#sign-in").click()
        page.wait_for_url(re.compile(r".*/idp/authorize.*"))
        page.locator(f"input[name=login][value='{who.login}']").check()
        page.locator("#password").fill(who.password)
        page.locator("button[type=submit]").click()
        page.locator(".who-name").filter(has_text=who.name).wait_for()
        return who

    return do
