-- The HMC's fleet (issue 13): product catalogue, inventory, a device's life as a state
-- machine (ingest/device_life.py), hubs with credentials, placements and a versioned
-- retained configuration.

-- A product of a principal's catalogue: what kind of device it is and how to treat it.
-- kind: a DeviceProfile value (blood_pressure, weight_scale, pulse_oximeter, glucose,
-- dispenser) or 'hub'. quirks: what a hub must know (e.g. {"bond": true}: pair first).
CREATE TABLE products (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      text NOT NULL REFERENCES tenants(id),
    kind           text NOT NULL CHECK (kind IN ('blood_pressure', 'weight_scale',
                       'pulse_oximeter', 'glucose', 'dispenser', 'hub')),
    manufacturer   text NOT NULL CHECK (length(btrim(manufacturer)) BETWEEN 1 AND 128),
    model          text NOT NULL CHECK (length(btrim(model)) BETWEEN 1 AND 128),
    profiles       text[] NOT NULL DEFAULT '{}',
    quirks         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(quirks) = 'object'),
    firmware_line  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, manufacturer, model)
);

-- Inventory: a device the HMC registered (product_id set) or one ingest only saw.
-- state changes only through ingest/inventory.py, one device_state_changes row each.
ALTER TABLE devices ADD COLUMN product_id uuid REFERENCES products(id);
ALTER TABLE devices ADD COLUMN hardware_revision text;
ALTER TABLE devices ADD COLUMN state text NOT NULL DEFAULT 'in_stock'
    CHECK (state IN ('in_stock', 'assigned', 'returned', 'quarantine', 'repair', 'retired'));
ALTER TABLE devices ADD COLUMN registered_at timestamptz;
CREATE INDEX devices_product ON devices (product_id) WHERE product_id IS NOT NULL;
CREATE INDEX devices_owner_state ON devices (owner_tenant_id, state);

-- Devices already serving a resident are assigned.
UPDATE devices d SET state = 'assigned'
WHERE EXISTS (SELECT 1 FROM device_assignments a WHERE a.device_id = d.id AND a.ended_at IS NULL);

-- Every transition of a device: who (token subject and principal), when and why.
CREATE TABLE device_state_changes (
    id          bigserial PRIMARY KEY,
    device_id   uuid NOT NULL REFERENCES devices(id),
    from_state  text,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    by_subject  text NOT NULL,
    by_tenant   text NOT NULL,
    reason      text,
    detail      jsonb
);
CREATE INDEX device_state_changes_device ON device_state_changes (device_id, at);
CREATE INDEX device_state_changes_tenant ON device_state_changes (by_tenant, at);

-- Hubs: the same life as a device (placed at a home = assigned), a product, a serial.
ALTER TABLE hubs ADD COLUMN product_id uuid REFERENCES products(id);
ALTER TABLE hubs ADD COLUMN serial text;
ALTER TABLE hubs ADD COLUMN state text NOT NULL DEFAULT 'in_stock'
    CHECK (state IN ('in_stock', 'assigned', 'returned', 'quarantine', 'repair', 'retired'));
-- The newest HubConfig version issued (0: none yet); the hub's status says which one it
-- applied (last_status->'config_version').
ALTER TABLE hubs ADD COLUMN config_version integer NOT NULL DEFAULT 0
    CHECK (config_version >= 0);

CREATE TABLE hub_state_changes (
    id          bigserial PRIMARY KEY,
    hub_id      text NOT NULL REFERENCES hubs(id),
    from_state  text,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    by_subject  text NOT NULL,
    by_tenant   text NOT NULL,
    reason      text,
    detail      jsonb
);
CREATE INDEX hub_state_changes_hub ON hub_state_changes (hub_id, at);

-- Where a hub stands: at a resident's home, from and until.
CREATE TABLE hub_placements (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hub_id      text NOT NULL REFERENCES hubs(id),
    patient_id  uuid NOT NULL REFERENCES patients(id),
    tenant_id   text NOT NULL REFERENCES tenants(id),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at > started_at)
);
CREATE UNIQUE INDEX hub_placements_one_open ON hub_placements (hub_id) WHERE ended_at IS NULL;
CREATE INDEX hub_placements_patient ON hub_placements (patient_id);

-- Broker credentials of a hub: the password is shown once, only its Mosquitto hash
-- ($7$: PBKDF2-SHA512) is kept. At most one live credential per hub.
CREATE TABLE hub_credentials (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hub_id         text NOT NULL REFERENCES hubs(id),
    kind           text NOT NULL DEFAULT 'password' CHECK (kind = 'password'),
    password_hash  text NOT NULL CHECK (password_hash LIKE '$7$%'),
    issued_at      timestamptz NOT NULL DEFAULT now(),
    issued_by      text NOT NULL,
    revoked_at     timestamptz,
    revoked_by     text,
    revoke_reason  text
);
CREATE UNIQUE INDEX hub_credentials_one_live ON hub_credentials (hub_id) WHERE revoked_at IS NULL;

-- Every HubConfig issued: its version, payload and who caused it.
CREATE TABLE hub_configs (
    hub_id      text NOT NULL REFERENCES hubs(id),
    version     integer NOT NULL CHECK (version >= 1),
    issued_at   timestamptz NOT NULL,
    issued_by   text NOT NULL,
    payload     jsonb NOT NULL,
    PRIMARY KEY (hub_id, version)
);
