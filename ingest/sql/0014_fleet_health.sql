-- Fleet health (issue 13 item 4): what hubs and their devices last reported, kept in
-- columns the fleet list filters on, and a history of it that stays small.
--
-- ingest.health writes all of it from the hub status stream (every status and last
-- will), in the commit that stores the status (ingest.pipeline). No clinical values:
-- a hub status carries none.

-- The hub's health as of its last status. A last will carries only `online` and the
-- software version: the other values stay as the hub last reported them (as of
-- last_seen_at), which is what a technician wants to know of a hub gone silent.
ALTER TABLE hubs
    -- received time of the last status saying online (the hub was there)
    ADD COLUMN last_seen_at         timestamptz,
    -- since when `online` has its present value (the last transition)
    ADD COLUMN state_since          timestamptz,
    ADD COLUMN software_version     text,
    -- the configuration version the hub says it applied (hubs.config_version, 0012,
    -- is the newest one issued)
    ADD COLUMN config_version_applied integer,
    ADD COLUMN outbox_depth         integer,
    ADD COLUMN outbox_oldest_age_s  double precision,
    ADD COLUMN disk_free_bytes      bigint,
    ADD COLUMN alarms               text[] NOT NULL DEFAULT '{}',
    -- when a row of fleet_health_history was last written for this hub
    ADD COLUMN last_sample_at       timestamptz;

-- Rewritten with every status: leave room on each page for HOT updates (new pages).
ALTER TABLE hubs SET (fillfactor = 70);

UPDATE hubs SET
    last_seen_at = CASE WHEN online THEN last_status_at END,
    state_since = last_status_at,
    software_version = last_status->>'software_version',
    config_version_applied = (last_status->>'config_version')::integer,
    outbox_depth = (last_status->>'outbox_depth')::integer,
    outbox_oldest_age_s = (last_status->>'outbox_oldest_age_s')::double precision,
    disk_free_bytes = (last_status->>'disk_free_bytes')::bigint
WHERE last_status IS NOT NULL;

-- The fleet list: by principal, then state and how long (offline more than 24 h).
CREATE INDEX hubs_tenant_state ON hubs (tenant_id, online, state_since)
    WHERE tenant_id IS NOT NULL;

-- The care-unit filter: a unit's residents -> their open assignments -> allow-lists.
CREATE INDEX device_assignments_patient_open ON device_assignments (patient_id)
    WHERE ended_at IS NULL;
CREATE INDEX hub_devices_device_open ON hub_devices (device_id) WHERE ended_at IS NULL;

-- Each device a hub's status listed (its allow-list as the hub sees it), with what the
-- hub knows of it. A device the last status no longer lists is kept with `listed` false
-- (the runtime roles may not delete): every reader filters on `listed`. Keyed by radio
-- address, as statuses report devices.
CREATE TABLE hub_device_health (
    hub_id               text NOT NULL REFERENCES hubs(id),
    address              text NOT NULL CHECK (address = upper(address)),
    profile              text NOT NULL,
    last_seen_at         timestamptz,
    last_reading_at      timestamptz,
    rssi                 integer,
    battery_level        integer,
    firmware             text,
    readings             integer NOT NULL DEFAULT 0,
    sessions_failed      integer NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error           text,
    -- received time of the status that said this
    reported_at          timestamptz NOT NULL,
    listed               boolean NOT NULL DEFAULT true,
    PRIMARY KEY (hub_id, address)
) WITH (fillfactor = 70);  -- rewritten every status: room for HOT updates
CREATE INDEX hub_device_health_address ON hub_device_health (address);
-- "battery low": the hubs with a device at or below a level.
CREATE INDEX hub_device_health_battery ON hub_device_health (battery_level, hub_id)
    WHERE listed AND battery_level IS NOT NULL;

-- History per hub (address NULL) and per device (address set). Not every status: a row
-- when something changed (`reasons`: online, offline, software, config for a hub; new,
-- removed, firmware, battery_low, battery_ok, failing, recovered, error for a device)
-- and one sample per hub and device every ingest.health.SAMPLE_EVERY (6 h) otherwise.
-- Retention (ingest.health.prune_history, a job of the ingest worker, through
-- hemhub_prune_health_history below): samples 30 days,
-- changes 400 days. 10,000 hubs with 3 devices each: some 160,000 sample rows a day
-- (about 5 million in 30 days), instead of 14.4 million statuses a day.
CREATE TABLE fleet_health_history (
    id        bigserial PRIMARY KEY,
    hub_id    text NOT NULL,
    address   text,
    at        timestamptz NOT NULL,
    reasons   text[] NOT NULL,
    -- the hub's status without its device list, or the device's DeviceHealth
    snapshot  jsonb NOT NULL
);
CREATE INDEX fleet_health_history_hub ON fleet_health_history (hub_id, at DESC)
    WHERE address IS NULL;
CREATE INDEX fleet_health_history_device ON fleet_health_history (address, at DESC)
    WHERE address IS NOT NULL;
CREATE INDEX fleet_health_history_at ON fleet_health_history (at);

-- The retention job: ingest's role may not delete (ingest.roles), so it runs this, with
-- the owner's rights and nothing else (ingest.roles grants EXECUTE to ingest only).
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION hemhub_prune_health_history(keep_samples interval,
                                                    keep_changes interval)
        RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = %I, pg_temp AS $b$
            WITH gone AS (
                DELETE FROM fleet_health_history
                WHERE at < now() - keep_changes
                   OR (reasons = ARRAY['sample'] AND at < now() - keep_samples)
                RETURNING 1
            )
            SELECT count(*) FROM gone
        $b$ $f$, current_schema());
END
$do$;
REVOKE ALL ON FUNCTION hemhub_prune_health_history(interval, interval) FROM PUBLIC;

-- Readings a device flagged as its own fault (not a clinical finding): counted per
-- device and model for fleet health and the follow-up figures. The flags are
-- ingest.health.DEVICE_ERROR_FLAGS and DEVICE_ERROR_EVENTS; a test keeps them equal.
CREATE INDEX readings_device_errors ON readings (device_id, measured_at)
    WHERE status && ARRAY['sensor_malfunction', 'general_device_fault', 'time_fault',
                          'strip_insertion_error', 'equipment_malfunction',
                          'sensor_malfunctioning', 'unknown_sensor_connected']::text[]
       OR event->>'kind' IN ('device_error', 'jam');
