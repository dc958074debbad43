-- Care units of a principal, residents placed in them, and the fleet owner of a device.

-- A care unit (home-care group, ward, district team) of a principal. Nurse tokens may
-- carry a `care_units` claim that limits them to the residents of those units.
CREATE TABLE care_units (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL REFERENCES tenants(id),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    -- target of the composite key below: a resident's unit is of the resident's principal
    UNIQUE (tenant_id, id)
);

ALTER TABLE patients ADD COLUMN care_unit_id uuid;
-- MATCH SIMPLE: a resident without a unit (care_unit_id NULL) is not checked; one with a
-- unit can only be in a unit of its own principal.
ALTER TABLE patients ADD CONSTRAINT patients_care_unit_fk
    FOREIGN KEY (tenant_id, care_unit_id) REFERENCES care_units (tenant_id, id);
CREATE INDEX patients_care_unit ON patients (care_unit_id) WHERE care_unit_id IS NOT NULL;

-- The principal whose fleet (its HMC, the assistive-technology centre) owns the device.
-- Set by `registry.set_device_owner`, or on the first assignment to a resident. It
-- decides who may see the device's unattributed readings (GET /api/v1/fleet/unattributed).
ALTER TABLE devices ADD COLUMN owner_tenant_id text REFERENCES tenants(id);
CREATE INDEX devices_owner ON devices (owner_tenant_id) WHERE owner_tenant_id IS NOT NULL;

-- Readings no assignment covered (patient_id NULL): counted by /readyz and listed per
-- device for the fleet, without scanning attributed readings.
CREATE INDEX readings_unattributed ON readings (device_id, measured_at) WHERE patient_id IS NULL;

-- Devices that already served a resident belong to that resident's principal's fleet
-- (the earliest assignment: the principal that first lent it out).
UPDATE devices d SET owner_tenant_id = (
    SELECT a.tenant_id FROM device_assignments a
    WHERE a.device_id = d.id ORDER BY a.started_at LIMIT 1
)
WHERE d.owner_tenant_id IS NULL;
