-- Erasure of a resident (issue 16; docs/audit.md, "Erasure and retention"): what hemhub
-- holds about a deactivated resident is deleted or made pseudonymous, in one transaction,
-- by hemhub_erase_resident, which the API's role may execute (the API checks the caller:
-- HMC or admin of the resident's principal) and which runs with the owner's rights:
--
--   deleted       readings, alerts (and their events: who acked, the notes), threshold
--                 sets, monitoring schedules, shares, and the resident's registry row
--                 (its name, deactivation reason, care unit);
--   pseudonymous  the device and hub periods (the fleet's traceability of each device)
--                 move to a new registry row with a random id (the pseudonym), no name;
--   audit log     kept (HSLF-FS 2016:40 4 kap. 9 §: at least five years); in every row
--                 about the resident the id becomes the pseudonym, the resident's names
--                 and free-text reasons become "(erased)", and the row's content salt is
--                 dropped: the chain still verifies (0017), nobody can tell any more whom
--                 the row was about, and the set of rows changed is recorded, by count
--                 and digest, in the erasure's own audit row (written by the API).
--
-- It refuses (fails closed) while any table it does not know references the rows it
-- deletes or moves, so a later migration that adds resident data must teach it what to
-- do with that data.

CREATE FUNCTION hemhub_scrub_json(doc jsonb, names text[], free_text_keys text[],
                                  parent_key text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
BEGIN
    CASE jsonb_typeof(doc)
    WHEN 'object' THEN
        SELECT coalesce(jsonb_object_agg(key, hemhub_scrub_json(value, names, free_text_keys, key)),
                        '{}'::jsonb)
          INTO result FROM jsonb_each(doc);
        RETURN result;
    WHEN 'array' THEN
        SELECT coalesce(jsonb_agg(hemhub_scrub_json(value, names, free_text_keys, parent_key)
                                  ORDER BY ord), '[]'::jsonb)
          INTO result FROM jsonb_array_elements(doc) WITH ORDINALITY AS e(value, ord);
        RETURN result;
    WHEN 'string' THEN
        IF parent_key = ANY (free_text_keys)
           OR EXISTS (SELECT 1 FROM unnest(names) AS n
                      WHERE length(n) > 0 AND strpos(lower(doc #>> '{}'), lower(n)) > 0) THEN
            RETURN to_jsonb('(erased)'::text);
        END IF;
        RETURN doc;
    ELSE
        RETURN doc;
    END CASE;
END
$$;

DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION hemhub_erase_resident(resident uuid, principal text, pseudonym uuid)
        RETURNS jsonb
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $b$
        DECLARE
            p patients%%ROWTYPE;
            names text[];
            unknown text;
            counts jsonb := '{}'::jsonb;
            n bigint;
            audit_seqs text;
            audit_count bigint;
        BEGIN
            SELECT * INTO p FROM patients WHERE id = resident AND tenant_id = principal
                FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'no resident %% of principal %%', resident, principal
                    USING ERRCODE = 'no_data_found';
            END IF;
            IF p.deactivated_at IS NULL THEN
                RAISE EXCEPTION 'the resident is active: deactivate it first'
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            -- every reference to what is deleted or moved must be one handled below
            SELECT string_agg(DISTINCT conrelid::regclass::text || ' -> '
                              || confrelid::regclass::text, ', ') INTO unknown
              FROM pg_constraint
             WHERE contype = 'f'
               AND confrelid IN ('patients'::regclass, 'alerts'::regclass,
                                 'threshold_sets'::regclass, 'patient_shares'::regclass)
               AND (conrelid::regclass::text, confrelid::regclass::text) NOT IN (
                   ('device_assignments', 'patients'), ('hub_placements', 'patients'),
                   ('alerts', 'patients'), ('threshold_sets', 'patients'),
                   ('monitoring_schedules', 'patients'), ('patient_shares', 'patients'),
                   ('alerts', 'threshold_sets'), ('alert_events', 'alerts'));
            IF unknown IS NOT NULL THEN
                RAISE EXCEPTION 'erasure does not know what to do with the rows of %% (a'
                    ' table that references resident data)', unknown
                    USING ERRCODE = 'feature_not_supported';
            END IF;

            -- every name the resident had here: the current one and the renames the log saw
            SELECT array_agg(DISTINCT known.name) INTO names FROM (
                SELECT p.display_name AS name
                UNION
                SELECT detail #>> ARRAY['changes', 'display_name', side]
                  FROM audit_log, unnest(ARRAY['from', 'to']) AS side
                 WHERE patient_id = resident
                   AND detail #>> ARRAY['changes', 'display_name', side] IS NOT NULL
            ) AS known;

            INSERT INTO patients (id, tenant_id, display_name, programme, created_at,
                                  deactivated_at, deactivated_by, deactivation_reason)
            VALUES (pseudonym, p.tenant_id, '(erased)', p.programme, p.created_at,
                    p.deactivated_at, NULL, '(erased)');
            UPDATE device_assignments SET patient_id = pseudonym WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('device_periods_pseudonymised', n);
            UPDATE hub_placements SET patient_id = pseudonym WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('hub_periods_pseudonymised', n);
            -- who acknowledged or resolved the alerts, with their notes (migration 0019)
            DELETE FROM alert_events
             WHERE alert_id IN (SELECT id FROM alerts WHERE patient_id = resident);
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('alert_events_deleted', n);
            DELETE FROM alerts WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('alerts_deleted', n);
            DELETE FROM threshold_sets WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('threshold_sets_deleted', n);
            DELETE FROM monitoring_schedules WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('schedules_deleted', n);
            DELETE FROM patient_shares WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('shares_deleted', n);
            DELETE FROM readings WHERE patient_id = resident;
            GET DIAGNOSTICS n = ROW_COUNT;
            counts := counts || jsonb_build_object('readings_deleted', n);
            DELETE FROM patients WHERE id = resident;

            -- the access log: pseudonymised in place (0017's append-only trigger admits
            -- exactly this change while the setting names the pseudonym)
            PERFORM set_config('hemhub.audit_pseudonymising', pseudonym::text, true);
            UPDATE audit_log
               SET patient_id = CASE WHEN patient_id = resident THEN pseudonym ELSE patient_id END,
                   resource = replace(resource, resident::text, pseudonym::text),
                   detail = hemhub_scrub_json(
                       replace(detail::text, resident::text, pseudonym::text)::jsonb,
                       names,
                       CASE WHEN patient_id = resident THEN ARRAY['reason', 'note', 'purpose']
                            ELSE ARRAY[]::text[] END),
                   content_salt = NULL,
                   pseudonymised_as = pseudonym
             WHERE pseudonymised_as IS NULL
               AND (patient_id = resident
                    OR strpos(resource, resident::text) > 0
                    OR strpos(detail::text, resident::text) > 0);
            PERFORM set_config('hemhub.audit_pseudonymising', '', true);
            SELECT count(*), string_agg(chain_seq::text, ',' ORDER BY chain_seq)
              INTO audit_count, audit_seqs
              FROM audit_log WHERE pseudonymised_as = pseudonym;
            RETURN counts || jsonb_build_object(
                'audit_rows', audit_count,
                'audit_rows_digest', encode(sha256(convert_to(coalesce(audit_seqs, ''), 'UTF8')),
                                            'hex'));
        END
        $b$ $f$, current_schema());
END
$do$;
REVOKE ALL ON FUNCTION hemhub_erase_resident(uuid, text, uuid) FROM PUBLIC;
