-- Alert engine: versioned threshold sets, monitoring schedules, and what alerts record
-- about the rule that fired and how they were resolved.

-- A per-resident override of the programme's default thresholds (ingest/programmes.py).
-- Each change is a new row (never an update): who made it, when, and from when it
-- applies. `rules` is a complete threshold document (ingest.thresholds.Thresholds), so
-- a version can be read on its own. The programme default counts as version
-- programmes.PROFILE_VERSION; a resident's overrides continue the numbering after it.
CREATE TABLE threshold_sets (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL REFERENCES tenants(id),
    patient_id    uuid NOT NULL REFERENCES patients(id),
    version       integer NOT NULL CHECK (version >= 1),
    -- the programme the override was derived from (for the record)
    programme     text NOT NULL,
    rules         jsonb NOT NULL,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    applies_from  timestamptz NOT NULL,
    note          text,
    UNIQUE (patient_id, version)
);
CREATE INDEX threshold_sets_patient_from ON threshold_sets (patient_id, applies_from DESC);

-- Which measurement a resident is expected to take, and how often ("BP daily").
-- The missing-data rules alert when no valid measurement arrived within `every` plus
-- the grace of the threshold set.
CREATE TABLE monitoring_schedules (
    patient_id       uuid NOT NULL REFERENCES patients(id),
    measurement_type text NOT NULL,
    every            interval NOT NULL CHECK (every > interval '0'),
    starts_at        timestamptz NOT NULL DEFAULT now(),
    active           boolean NOT NULL DEFAULT true,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, measurement_type)
);

-- The threshold set whose version is in alerts.rule_version (NULL: the programme
-- default), the latest reason and measurement time of a repeat, and whether the engine
-- resolved the alert because its condition cleared.
ALTER TABLE alerts ADD COLUMN threshold_set_id uuid REFERENCES threshold_sets(id);
ALTER TABLE alerts ADD COLUMN last_reason text;
ALTER TABLE alerts ADD COLUMN last_measured_at timestamptz;
ALTER TABLE alerts ADD COLUMN auto_resolved boolean NOT NULL DEFAULT false;
UPDATE alerts SET last_reason = reason, last_measured_at = measured_at;

-- The readings of one kind of one resident, newest first (missing-data and trend rules).
CREATE INDEX readings_patient_type_time ON readings (patient_id, measurement_type, measured_at DESC);
