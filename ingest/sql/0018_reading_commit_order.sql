-- The transaction that stored each reading (issue 16: FHIR incremental pulls).
--
-- A journal integration pulls new readings every few minutes and must miss none and
-- repeat none. `stored_at` (now(): the writer's transaction start) cannot order that:
-- two ingest transactions commit in any order, so a reading stamped earlier can become
-- visible after one stamped later has been pulled. The writer's transaction id can:
-- every transaction whose id is below the oldest one still in progress (api.fhir.feed,
-- the safe horizon) has finished, so what a pull returns below that horizon is final,
-- and the next pull starts there. The column is filled by its default in the same
-- INSERT ... ON CONFLICT that stores the key (ingest.pipeline), so the writer needs no
-- change; rows stored before this migration get the migration's id (all final).
ALTER TABLE reading_keys ADD COLUMN stored_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX reading_keys_stored_xid ON reading_keys (stored_xid, idempotency_key);

-- A pull reads the keys in that order and probes readings for each by measurement time
-- (api.fhir.fhir_queries): natively partitioned readings need an index led by
-- measured_at for the probe (a TimescaleDB hypertable has one: its time index).
DO $$
BEGIN
    IF (SELECT value FROM hemhub_meta WHERE key = 'readings_partitioning') = 'native' THEN
        CREATE INDEX readings_measured_at ON readings (measured_at);
    END IF;
END
$$;
