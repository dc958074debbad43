-- Rollouts for the HMC (issue 14 item 3): artifacts registered, campaigns with their
-- targets in waves, and every decision of a campaign (ingest/campaigns.py,
-- ingest/campaign_engine.py, docs/firmware-rollouts.md).

-- The home's time zone (IANA name) of a hub, for a campaign's night window; NULL: the
-- campaign's own zone.
ALTER TABLE hubs ADD COLUMN time_zone text
    CHECK (time_zone IS NULL OR time_zone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$');

-- What may be rolled out: a hub software bundle, or one device model's firmware image,
-- named as a target of the update repository (TUF).
CREATE TABLE ota_artifacts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text NOT NULL REFERENCES tenants(id),
    kind         text NOT NULL CHECK (kind IN ('hub_software', 'device_firmware')),
    version      text NOT NULL CHECK (version ~ '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$'),
    target       text NOT NULL CHECK (target ~ '^[0-9A-Za-z][0-9A-Za-z._+/-]{0,254}$'),
    -- device_firmware: the product (model) the image is for
    product_id   uuid REFERENCES products(id),
    sha256       text CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    length       bigint CHECK (length IS NULL OR length > 0),
    notes        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    CHECK ((kind = 'device_firmware') = (product_id IS NOT NULL))
);
CREATE UNIQUE INDEX ota_artifacts_version
    ON ota_artifacts (tenant_id, kind, coalesce(product_id::text, ''), version);

-- A campaign: one artifact to the targets its selector chose when it was created, wave
-- after wave (cumulative percentages), in a window of the home's local time, at most
-- max_parallel updates in flight; a wave advances only through its health gate.
CREATE TABLE ota_campaigns (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text NOT NULL REFERENCES tenants(id),
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    artifact_id        uuid NOT NULL REFERENCES ota_artifacts(id),
    selector           jsonb NOT NULL DEFAULT '{}'::jsonb,
    waves              integer[] NOT NULL CHECK (cardinality(waves) BETWEEN 1 AND 10),
    window_start       time,
    window_end         time,
    time_zone          text NOT NULL DEFAULT 'UTC',
    max_parallel       integer NOT NULL CHECK (max_parallel >= 1),
    confirm_timeout_s  integer NOT NULL CHECK (confirm_timeout_s >= 10),
    margin_failed_sessions integer NOT NULL CHECK (margin_failed_sessions >= 0),
    margin_error_readings  integer NOT NULL CHECK (margin_error_readings >= 0),
    state              text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'running',
                           'paused', 'completed', 'cancelled', 'rolling_back', 'rolled_back')),
    wave               integer NOT NULL DEFAULT 0,
    paused_reason      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((window_start IS NULL) = (window_end IS NULL))
);
CREATE INDEX ota_campaigns_active ON ota_campaigns (state) WHERE state IN ('running', 'rolling_back');
CREATE INDEX ota_campaigns_tenant ON ota_campaigns (tenant_id, created_at);

-- One hub (hub software) or one device behind a hub (firmware) of a campaign.
-- state: pending (not asked yet), issued (desired state sent), confirmed, failed
-- (failed, reverted or not confirmed in time: `reason`), skipped (cancelled before it
-- was asked), rolled_back (asked back to from_version), restored (runs it again).
CREATE TABLE ota_campaign_targets (
    campaign_id     uuid NOT NULL REFERENCES ota_campaigns(id),
    hub_id          text NOT NULL REFERENCES hubs(id),
    address         text NOT NULL DEFAULT '' CHECK (address = upper(address)),
    wave            integer NOT NULL,
    from_version    text,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'issued',
                        'confirmed', 'failed', 'skipped', 'rolled_back', 'restored')),
    issued_at       timestamptz,
    finished_at     timestamptz,
    reason          text,
    -- the device counters when the target was asked, or the campaign resumed (the
    -- health gate's baseline), and since when error readings count against it
    baseline        jsonb,
    gate_from       timestamptz,
    PRIMARY KEY (campaign_id, hub_id, address)
);
CREATE INDEX ota_campaign_targets_hub ON ota_campaign_targets (hub_id, state);

-- Every step of a campaign: created, started, wave advanced, paused (why), resumed,
-- cancelled, rollback, completed; by whom (a subject, or the engine).
CREATE TABLE ota_campaign_events (
    id           bigserial PRIMARY KEY,
    campaign_id  uuid NOT NULL REFERENCES ota_campaigns(id),
    at           timestamptz NOT NULL DEFAULT now(),
    by_subject   text NOT NULL,
    kind         text NOT NULL,
    detail       jsonb
);
CREATE INDEX ota_campaign_events_campaign ON ota_campaign_events (campaign_id, at);
