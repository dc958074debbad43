-- hemhub schema v1: registry, assignment periods, readings, alerts, dead letters, audit.
-- The readings table is created by the migration runner (ingest/migrations.py),
-- which chooses a TimescaleDB hypertable or native range partitioning.

CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patients (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL REFERENCES tenants(id),
    display_name  text NOT NULL,
    -- programme selects default alert thresholds (hypertension, heart_failure, copd, diabetes)
    programme     text NOT NULL DEFAULT 'hypertension',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_tenant ON patients (tenant_id);

CREATE TABLE hubs (
    id             text PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    online         boolean,
    last_status    jsonb,
    last_status_at timestamptz
);

CREATE TABLE devices (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- DeviceIdentity.stable_id: manufacturer|model|serial, or the address when no serial
    stable_id     text NOT NULL UNIQUE,
    address       text NOT NULL,
    manufacturer  text,
    model         text,
    serial        text,
    firmware      text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

-- Which resident (and so which principal) a device served, and when. Readings are
-- attributed by their measurement time to the period active then, never to the
-- device's current owner.
CREATE TABLE device_assignments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id   uuid NOT NULL REFERENCES devices(id),
    patient_id  uuid NOT NULL REFERENCES patients(id),
    tenant_id   text NOT NULL REFERENCES tenants(id),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at > started_at)
);
CREATE INDEX device_assignments_device ON device_assignments (device_id, started_at);
CREATE UNIQUE INDEX device_assignments_one_open ON device_assignments (device_id)
    WHERE ended_at IS NULL;

-- One row per idempotency key ever stored: the dedupe authority, independent of the
-- time partitioning of readings (a partitioned unique key would have to include time).
CREATE TABLE reading_keys (
    idempotency_key text PRIMARY KEY,
    measured_at     timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL REFERENCES tenants(id),
    patient_id       uuid NOT NULL REFERENCES patients(id),
    rule             text NOT NULL,
    rule_version     integer NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    status           text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'acknowledged', 'resolved')),
    reason           text NOT NULL,
    -- the reading that opened the alert and the last one that repeated it
    first_reading_key text,
    last_reading_key  text,
    measured_at      timestamptz NOT NULL,
    late             boolean NOT NULL DEFAULT false,
    count            integer NOT NULL DEFAULT 1,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    last_at          timestamptz NOT NULL DEFAULT now(),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    resolution_note  text
);
-- One open (or acknowledged, not yet resolved) alert per resident and rule.
CREATE UNIQUE INDEX alerts_one_active ON alerts (patient_id, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_tenant_status ON alerts (tenant_id, status, last_at DESC);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL
);

-- Access to patient data (Swedish patient-data law: access logs that are checked).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    subject     text NOT NULL,
    role        text NOT NULL,
    tenant_id   text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    patient_id  uuid,
    detail      jsonb
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
