"""Settings shared by every hemhub service, read from `HEMHUB_*` environment variables.

A URL left unset means "use the embedded default" (`hemhub demo` starts an embedded
PostgreSQL and MQTT broker); production sets `HEMHUB_DATABASE_URL` and `HEMHUB_MQTT_URL`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: How a new readings table is partitioned; "auto": TimescaleDB where it is installed.
PartitioningChoice = Literal["auto", "timescaledb", "native"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEMHUB_", extra="ignore")

    #: postgresql://user:pass@host:port/db; None = embedded PostgreSQL (demo only).
    database_url: str | None = None
    #: mqtt://user:pass@host:1883 or mqtts://...:8883; None = embedded broker (demo only).
    mqtt_url: str | None = None
    #: CA bundle that signs the broker's certificate (mqtts://); default: the system's.
    mqtt_ca_file: str | None = None
    #: How the backend logs in to publish hubs' configuration and commands (user
    #: hemhub-backend in deploy/mosquitto); default: mqtt_url.
    backend_mqtt_url: str | None = None
    #: Whether the API runs the hub link (ingest/hub_link.py) in its process; set false
    #: when `hemhub hub-link` runs as a service of its own.
    api_runs_hub_link: bool = True
    #: How often the API runs the rollout campaigns' engine (api/campaign_runner.py);
    #: 0: never (another replica, or `hemhub ota tick`, does).
    campaign_tick_s: float = Field(default=15.0, ge=0)
    #: Where the demo stack, the demo signing key and embedded servers keep their data.
    data_dir: Path = Path(".hemhub")

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    #: Bearer tokens: the issuer's JWKS URL for production; the demo uses its own key file.
    jwt_issuer: str = "hemhub-demo"
    jwt_audience: str = "hemhub"
    jwt_jwks_url: str | None = None
    #: PEM file with the demo's RSA private key (public half verifies tokens).
    jwt_private_key_file: Path | None = None
    #: With no JWKS URL, the API verifies tokens with a key it makes itself, so whoever
    #: can read that file can mint any token: it refuses to start unless this says so
    #: (`hemhub demo` and tests do), and then warns.
    jwt_allow_self_made_key: bool = False
    #: Sign-in of the web app (OpenID Connect, authorization code + PKCE): the identity
    #: provider's issuer URL (its /.well-known/openid-configuration) and the web app's
    #: public client id there. Unset issuer: the demo identity provider when it runs.
    oidc_issuer: str | None = None
    oidc_client_id: str = "hemhub-web"
    oidc_scope: str = "openid profile"
    #: The web app's language until the user picks one (remembered in the browser).
    ui_default_language: Literal["sv", "en"] = "sv"
    #: Serve the demo identity provider at /idp (demo users, one password): only with the
    #: self-made signing key (`hemhub demo`, tests); the API refuses it otherwise.
    demo_idp: bool = False
    #: The demo users' password; None: made once and kept in <data_dir>/demo-password.
    demo_password: str | None = None
    #: How long the demo identity provider's access tokens last.
    demo_token_ttl_s: int = Field(default=8 * 3600, ge=10)
    #: The principal that runs the platform: its admins create principals and list them
    #: all (`hemhub fleet principals ...`); None: principals are created only by hand
    #: (`hemhub demo`, ingest.registry.ensure_tenant). Every other admin sees its own.
    operator_principal: str | None = None
    #: The largest request body the API reads (bytes); larger gets 413.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1)

    #: Database roles `hemhub migrate` grants the runtime privileges to (creating them
    #: NOLOGIN when missing, for an operator to grant to login users): the API's and
    #: ingest's. None: migrate grants nothing (every service runs as the owner).
    db_api_role: str | None = None
    db_ingest_role: str | None = None

    #: Ingest batching: a batch closes at this many readings or after this many seconds.
    ingest_batch_size: int = Field(default=2000, ge=1)
    ingest_batch_seconds: float = Field(default=0.05, gt=0)
    #: Database connections per ingest worker: a large batch is split by hub over them,
    #: so the database stores one part while Python evaluates another.
    ingest_connections: int = Field(default=3, ge=1, le=16)
    #: Prometheus metrics of `hemhub ingest` on this port (None: not served); with several
    #: workers the supervisor serves their sum (ingest/metrics.py, docs/operations.md).
    ingest_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: The address the ingest metrics listen on (put a scraper on the same host or network).
    ingest_metrics_host: str = "127.0.0.1"
    #: How `hemhub migrate` partitions a new readings table: "auto" (a TimescaleDB
    #: hypertable where the extension is installed, else native), "timescaledb" or "native".
    readings_partitioning: PartitioningChoice = "auto"
    #: TimescaleDB only: readings older than this many years are dropped (clinical records).
    readings_retention_years: int = Field(default=10, ge=1)

    @property
    def hub_link_mqtt_url(self) -> str | None:
        return self.backend_mqtt_url or self.mqtt_url

    @property
    def demo_password_file(self) -> Path:
        return self.data_dir / "demo-password"

    @property
    def demo_key_file(self) -> Path:
        return self.jwt_private_key_file or self.data_dir / "demo-signing-key.pem"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (FastAPI dependency; overridable in tests)."""
    return Settings()


class MqttTarget:
    """An MQTT URL split into what paho needs."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"}:
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {url!r}")
        self.url = url
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = parts.username
        self.password = parts.password

    def __repr__(self) -> str:
        return f"MqttTarget({'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port})"
