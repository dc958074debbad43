-- Device record numbers (glucose meters, dispensers) and device events (medication robots).
ALTER TABLE readings ADD COLUMN device_sequence bigint;
ALTER TABLE readings ADD COLUMN event jsonb;
CREATE INDEX readings_patient_event ON readings (patient_id, measured_at DESC)
    WHERE event IS NOT NULL;
