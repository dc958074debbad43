-- Idempotency keys from what a record is, not how it travelled (issue 11).
--
-- Hubs from this release leave a record's transport bits out of its key
-- (`record_identity` in device_drivers/codecs/registry.py; docs/devices.md, "What
-- identifies a record"). A record with none set keeps the key it had. For each stored
-- reading that had some set (a dispenser event sent from storage; a PLX spot-check or
-- continuous measurement with "from storage" or an "... ongoing" state) this adds, beside
-- its old key, the key an upgraded hub makes for it, so that its replay by an upgraded
-- hub is a duplicate. Old keys stay: a hub not yet upgraded still dedupes. Upgrade order:
-- `hemhub migrate` first, then the hubs. Idempotent (ON CONFLICT DO NOTHING).
--
-- The functions below mirror the Python codecs byte for byte; tests/ingest/
-- test_record_identity_keys.py checks the keys they make against the hub's.

-- `raw` with `mask` cleared in the little-endian field of `size` bytes at `at`.
CREATE FUNCTION pg_temp.hemhub_clear_bits(raw bytea, at integer, size integer, mask bigint)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    field bigint := 0;
BEGIN
    IF length(raw) < at + size THEN
        RETURN raw;
    END IF;
    FOR i IN 0 .. size - 1 LOOP
        field := field | (get_byte(raw, at + i)::bigint << (8 * i));
    END LOOP;
    field := field & ~mask;
    FOR i IN 0 .. size - 1 LOOP
        raw := set_byte(raw, at + i, ((field >> (8 * i)) & 255)::integer);
    END LOOP;
    RETURN raw;
END $$;

-- A record's bytes without its transport bits (registry.record_identity).
CREATE FUNCTION pg_temp.hemhub_record_identity(characteristic text, raw bytea)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    flags integer;
    tail integer;
    status_flag integer;
    device_flag integer;
BEGIN
    IF length(raw) = 0 THEN
        RETURN raw;
    END IF;
    flags := get_byte(raw, 0);
    IF lower(characteristic) = '48454d48-0002-4d45-4449-53504e535201' THEN
        -- Dispenser Event: flag bit 2, sent from storage.
        RETURN set_byte(raw, 0, flags & ~4);
    ELSIF upper(characteristic) = '2A5E' THEN
        -- PLX Spot-Check: flags | SpO2 | PR | [Date Time 7] | [status u16] | [device u24]
        tail := 5 + CASE WHEN flags & 1 <> 0 THEN 7 ELSE 0 END;
        status_flag := 2;
        device_flag := 4;
    ELSIF upper(characteristic) = '2A5F' THEN
        -- PLX Continuous: flags | SpO2 | PR | [fast 4] | [slow 4] | [status] | [device]
        tail := 5 + CASE WHEN flags & 1 <> 0 THEN 4 ELSE 0 END
                  + CASE WHEN flags & 2 <> 0 THEN 4 ELSE 0 END;
        status_flag := 4;
        device_flag := 8;
    ELSE
        RETURN raw;
    END IF;
    IF flags & status_flag <> 0 THEN
        -- measurement ongoing (bit 5), from storage (9), calibration ongoing (12)
        raw := pg_temp.hemhub_clear_bits(raw, tail, 2, (1 << 5) | (1 << 9) | (1 << 12));
        tail := tail + 2;
    END IF;
    IF flags & device_flag <> 0 THEN
        -- extended display update ongoing (bit 0), signal analysis ongoing (9)
        raw := pg_temp.hemhub_clear_bits(raw, tail, 3, (1 << 0) | (1 << 9));
    END IF;
    RETURN raw;
END $$;

-- gateway/readings.py idempotency_key: SHA-256 over stable id, characteristic, the
-- record's identity in hex and its record number, each followed by a NUL byte.
INSERT INTO reading_keys (idempotency_key, measured_at)
SELECT encode(sha256(
           convert_to(d.stable_id, 'UTF8') || '\x00'::bytea
           || convert_to(r.characteristic, 'UTF8') || '\x00'::bytea
           || convert_to(encode(x.identity, 'hex'), 'UTF8') || '\x00'::bytea
           || convert_to(coalesce(r.device_sequence::text, ''), 'UTF8') || '\x00'::bytea
       ), 'hex'),
       r.measured_at
FROM readings r
JOIN devices d ON d.id = r.device_id
CROSS JOIN LATERAL (
    SELECT pg_temp.hemhub_record_identity(r.characteristic, r.raw) AS identity
) x
WHERE (upper(r.characteristic) IN ('2A5E', '2A5F')
       OR lower(r.characteristic) = '48454d48-0002-4d45-4449-53504e535201')
  AND x.identity <> r.raw
ON CONFLICT (idempotency_key) DO NOTHING;

DROP FUNCTION pg_temp.hemhub_record_identity(text, bytea);
DROP FUNCTION pg_temp.hemhub_clear_bits(bytea, integer, integer, bigint);
