-- A hub writes only for its own devices (issue 11).
--
-- A hub belongs to one principal (tenant). Its allow-list is a set of periods per
-- device, like device assignments: a reading is attributed to a resident only when the
-- sending hub was entitled to the device at the reading's measurement time and is of
-- the same principal as the device (its resident's principal, else its fleet owner).
-- Any other reading is kept quarantined with a reason code (never a resident's value,
-- never judged by a clinical rule) and raises a security event.

-- NULL: a hub that was never registered (its readings quarantine as unknown_hub).
ALTER TABLE hubs ADD COLUMN tenant_id text REFERENCES tenants(id);
CREATE INDEX hubs_tenant ON hubs (tenant_id) WHERE tenant_id IS NOT NULL;

-- A hub's allow-list: the periods in which the hub may write for a device. Periods of
-- one hub and device never overlap (ingest.registry); a device may be on two hubs of its
-- principal at once (a spare hub in the same home).
CREATE TABLE hub_devices (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hub_id      text NOT NULL REFERENCES hubs(id),
    device_id   uuid NOT NULL REFERENCES devices(id),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at > started_at)
);
CREATE INDEX hub_devices_device_hub ON hub_devices (device_id, hub_id, started_at);
CREATE INDEX hub_devices_hub ON hub_devices (hub_id);
CREATE UNIQUE INDEX hub_devices_one_open ON hub_devices (hub_id, device_id)
    WHERE ended_at IS NULL;

-- Why a reading was not attributed although it may name a resident's device. NULL for
-- every reading of an entitled hub (attributed, or unattributed for want of an
-- assignment). Quarantined readings have no patient_id and no tenant_id.
ALTER TABLE readings ADD COLUMN quarantine text
    CHECK (quarantine IN ('unknown_hub', 'other_principal', 'hub_not_entitled'));

-- Writes no principal allowed, for operators and the device's principal to see: one row
-- per hub, device and reason in each stored batch, with how many readings it held.
CREATE TABLE security_events (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    kind              text NOT NULL,
    reason            text NOT NULL,
    hub_id            text NOT NULL,
    -- the hub's principal (NULL: an unregistered hub)
    hub_tenant_id     text,
    device_id         uuid NOT NULL,
    -- the principal of the device's resident at the time, else its fleet owner
    device_tenant_id  text,
    readings          integer NOT NULL CHECK (readings >= 1),
    first_measured_at timestamptz NOT NULL,
    last_measured_at  timestamptz NOT NULL,
    detail            text NOT NULL
);
CREATE INDEX security_events_at ON security_events (at);
CREATE INDEX security_events_device_tenant ON security_events (device_tenant_id, at)
    WHERE device_tenant_id IS NOT NULL;

-- Which hub last reported each device (in a reading or in its status' device list), so
-- that a hub gone silent (its last will carries no device list) is still named as the
-- reason for missing data. Keyed by radio address, as hub statuses report devices.
CREATE TABLE device_last_hub (
    address     text PRIMARY KEY CHECK (address = upper(address)),
    hub_id      text NOT NULL,
    profile     text NOT NULL,
    reported_at timestamptz NOT NULL
);

-- Upgrade: a hub already writing for one principal only is registered under it, and
-- entitled to the devices whose readings it had attributed, from the first of them, so
-- an installation keeps attributing after migrate. A hub whose readings went to two
-- principals stays unregistered (its readings quarantine from now on): register it
-- with `ingest.registry.register_hub` after looking at why.
UPDATE hubs h SET tenant_id = t.tenant_id
FROM (
    SELECT hub_id, min(tenant_id) AS tenant_id FROM readings
    WHERE tenant_id IS NOT NULL
    GROUP BY hub_id HAVING count(DISTINCT tenant_id) = 1
) t
WHERE h.id = t.hub_id;

INSERT INTO hub_devices (hub_id, device_id, started_at)
SELECT r.hub_id, r.device_id, min(r.measured_at)
FROM readings r JOIN hubs h ON h.id = r.hub_id AND h.tenant_id = r.tenant_id
GROUP BY r.hub_id, r.device_id;

-- Quarantined readings per device, without scanning the unattributed ones (fleet views).
CREATE INDEX readings_quarantined ON readings (device_id, measured_at)
    WHERE quarantine IS NOT NULL;
