-- Residents through their whole life (deactivation) and sharing between principals.

-- A deactivated resident keeps every reading and alert, but gets no new attribution
-- (no device may be assigned, none is left assigned) and no new alerts (ingest.engine
-- and the scheduled evaluation skip them; their schedules are switched off).
ALTER TABLE patients ADD COLUMN deactivated_at timestamptz;
ALTER TABLE patients ADD COLUMN deactivated_by text;
ALTER TABLE patients ADD COLUMN deactivation_reason text;
-- target of the composite key of patient_shares: a share is granted by the resident's
-- own principal only
ALTER TABLE patients ADD CONSTRAINT patients_id_tenant UNIQUE (id, tenant_id);

-- A principal's grant of one resident to another principal: for a purpose and a period
-- [starts_at, ends_at). The grantee's nurses see the resident while the grant is in force
-- (not revoked, starts_at <= now < ends_at), and of its readings and alerts those
-- measured in the period (api.queries.visible: the one rule). Rows are never deleted:
-- a revocation is recorded with who, when and why.
CREATE TABLE patient_shares (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id         uuid NOT NULL,
    owner_tenant_id    text NOT NULL,
    grantee_tenant_id  text NOT NULL REFERENCES tenants(id),
    purpose            text NOT NULL CHECK (length(btrim(purpose)) BETWEEN 1 AND 200),
    reason             text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    starts_at          timestamptz NOT NULL,
    ends_at            timestamptz NOT NULL,
    granted_by         text NOT NULL,
    granted_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    revoked_by         text,
    revoke_reason      text,
    FOREIGN KEY (patient_id, owner_tenant_id) REFERENCES patients (id, tenant_id),
    CHECK (ends_at > starts_at),
    CHECK (grantee_tenant_id <> owner_tenant_id),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX patient_shares_grantee ON patient_shares (grantee_tenant_id, patient_id)
    WHERE revoked_at IS NULL;
CREATE INDEX patient_shares_patient ON patient_shares (patient_id);
CREATE INDEX patient_shares_owner ON patient_shares (owner_tenant_id, granted_at);

-- The alerts of given residents (a shared resident's in the grantee's lists, a patient's
-- alert list), without scanning the principal's.
CREATE INDEX alerts_patient ON alerts (patient_id, measured_at);
