-- Tamper evidence of the access log (issue 16): every audit_log row is chained by hash to
-- the row before it, computed here, in the database, on INSERT, so the API's role (which
-- may only insert) cannot choose the hashes. `hemhub audit verify` (hemhub/audit_chain.py)
-- recomputes the chain independently and reports the first broken link.
--
-- What is hashed (the encoding is hemhub_audit_field: `<byte length>:<UTF-8 bytes>`, or
-- `-` for NULL, so that no two rows encode alike):
--   content_digest = sha256(content_salt || patient_id || resource || detail::text)
--   row_hash       = sha256(prev_hash || chain_seq || id || at (µs since the epoch)
--                           || subject || role || tenant_id || action || content_digest)
-- The resident-identifying fields (patient_id, resource, detail) enter the chain only
-- through a salted digest: erasing a resident (hemhub_erase_resident) pseudonymises them
-- and drops the salt, the row keeps its digest and the chain still verifies, while nobody
-- can confirm afterwards which resident the row was about (the salt is gone).
--
-- chain_seq is the chain's own order, gapless: every insert locks the single row of
-- audit_chain_head until its transaction ends, so concurrent inserts queue there and
-- form one chain in commit order (ids are drawn before that, so they may interleave); a
-- transaction that rolls back takes its rows and its head update with it.

ALTER TABLE audit_log ADD COLUMN chain_seq bigint;
ALTER TABLE audit_log ADD COLUMN content_salt bytea;
ALTER TABLE audit_log ADD COLUMN content_digest bytea;
ALTER TABLE audit_log ADD COLUMN prev_hash bytea;
ALTER TABLE audit_log ADD COLUMN row_hash bytea;
-- the pseudonym that replaced the resident in this row when the resident was erased
ALTER TABLE audit_log ADD COLUMN pseudonymised_as uuid;

CREATE TABLE audit_chain_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq       bigint NOT NULL,
    hash      bytea NOT NULL
);

-- STABLE, not IMMUTABLE, in these three: convert_to and extract(epoch FROM timestamptz)
-- are STABLE, and PostgreSQL inlines a SQL function only when it is declared no less
-- volatile than its body; a function that is not inlined is planned on every call (20x
-- slower here).
CREATE FUNCTION hemhub_audit_field(value text) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN value IS NULL THEN '\x2d'::bytea
                ELSE convert_to(octet_length(convert_to(value, 'UTF8'))::text || ':', 'UTF8')
                     || convert_to(value, 'UTF8') END
$$;

CREATE FUNCTION hemhub_audit_content_digest(salt bytea, patient_id uuid, resource text,
                                            detail jsonb) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(salt || hemhub_audit_field(patient_id::text) || hemhub_audit_field(resource)
                  || hemhub_audit_field(detail::text))
$$;

CREATE FUNCTION hemhub_audit_row_hash(prev_hash bytea, chain_seq bigint, id bigint,
                                      at timestamptz, subject text, role text,
                                      tenant_id text, action text, content_digest bytea)
RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(prev_hash || hemhub_audit_field(chain_seq::text) || hemhub_audit_field(id::text)
                  || hemhub_audit_field((extract(epoch FROM at) * 1000000)::bigint::text)
                  || hemhub_audit_field(subject) || hemhub_audit_field(role)
                  || hemhub_audit_field(tenant_id) || hemhub_audit_field(action)
                  || content_digest)
$$;

-- 32 random bytes (two v4 UUIDs: 244 random bits) without needing pgcrypto.
CREATE FUNCTION hemhub_audit_salt() RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
$$;

-- Existing rows, in id order (the order they were written in): the chain starts at the
-- genesis hash of 32 zero bytes.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete;
DO $$
DECLARE
    r record;
    seq bigint := 0;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    salt bytea;
    digest bytea;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        seq := seq + 1;
        salt := hemhub_audit_salt();
        digest := hemhub_audit_content_digest(salt, r.patient_id, r.resource, r.detail);
        UPDATE audit_log
           SET chain_seq = seq, content_salt = salt, content_digest = digest, prev_hash = prev,
               row_hash = hemhub_audit_row_hash(prev, seq, r.id, r.at, r.subject, r.role,
                                                r.tenant_id, r.action, digest)
         WHERE id = r.id
        RETURNING row_hash INTO prev;
    END LOOP;
    INSERT INTO audit_chain_head (seq, hash) VALUES (seq, prev);
END
$$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_or_delete;

ALTER TABLE audit_log ALTER COLUMN chain_seq SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN content_digest SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN row_hash SET NOT NULL;
CREATE UNIQUE INDEX audit_log_chain_seq ON audit_log (chain_seq);
-- the auditor's review: a principal's rows by time, by user, by action
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at, id);
CREATE INDEX audit_log_tenant_subject ON audit_log (tenant_id, subject, at);
CREATE INDEX audit_log_pseudonymised ON audit_log (pseudonymised_as)
    WHERE pseudonymised_as IS NOT NULL;

-- The chaining triggers run with the owner's rights (the runtime roles have no privilege
-- on audit_chain_head) and overwrite whatever chain values an INSERT supplies; the time
-- of an entry is the database's (now(): the transaction's start), never the client's.
-- Each row locks the head (held until commit: the queue) and chains onto the newest row
-- its transaction wrote after the head, if any, else onto the head; the head itself is
-- written once per statement (AFTER STATEMENT), not once per row, since one row updated
-- thousands of times in a transaction makes every later lookup of it slower (a list of
-- 5,000 residents writes 5,000 audit rows in one statement).
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION hemhub_audit_log_chain() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $b$
        DECLARE
            head audit_chain_head%%ROWTYPE;
            last_seq bigint;
            last_hash bytea;
        BEGIN
            SELECT * INTO head FROM audit_chain_head FOR UPDATE;
            -- rows this statement or transaction chained already (not yet in the head);
            -- a row trigger sees the rows its statement inserted before this one
            SELECT chain_seq, row_hash INTO last_seq, last_hash FROM audit_log
             WHERE chain_seq > head.seq ORDER BY chain_seq DESC LIMIT 1;
            IF last_seq IS NULL THEN
                last_seq := head.seq;
                last_hash := head.hash;
            END IF;
            NEW.at := now();
            NEW.chain_seq := last_seq + 1;
            NEW.prev_hash := last_hash;
            NEW.content_salt := hemhub_audit_salt();
            NEW.pseudonymised_as := NULL;
            NEW.content_digest := hemhub_audit_content_digest(
                NEW.content_salt, NEW.patient_id, NEW.resource, NEW.detail);
            NEW.row_hash := hemhub_audit_row_hash(
                NEW.prev_hash, NEW.chain_seq, NEW.id, NEW.at, NEW.subject, NEW.role,
                NEW.tenant_id, NEW.action, NEW.content_digest);
            RETURN NEW;
        END
        $b$ $f$, current_schema());
    EXECUTE format($f$
        CREATE FUNCTION hemhub_audit_log_chain_head() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $b$
        BEGIN
            UPDATE audit_chain_head h SET seq = l.chain_seq, hash = l.row_hash
              FROM (SELECT chain_seq, row_hash FROM audit_log
                     WHERE chain_seq > (SELECT seq FROM audit_chain_head)
                     ORDER BY chain_seq DESC LIMIT 1) AS l;
            RETURN NULL;
        END
        $b$ $f$, current_schema());
END
$do$;
REVOKE ALL ON FUNCTION hemhub_audit_log_chain() FROM PUBLIC;
REVOKE ALL ON FUNCTION hemhub_audit_log_chain_head() FROM PUBLIC;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hemhub_audit_log_chain();
CREATE TRIGGER audit_log_chain_head AFTER INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION hemhub_audit_log_chain_head();

-- Append-only, as in 0009, with one exception: the pseudonymisation of an erased
-- resident's rows by hemhub_erase_resident (which announces it in a transaction-local
-- setting). It may change only the identifying fields, must drop the salt, and leaves
-- every hashed value and the chain as they were. The runtime roles have no UPDATE on
-- audit_log at all; only that function (the owner's) reaches this branch.
CREATE OR REPLACE FUNCTION hemhub_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.pseudonymised_as IS NOT NULL
           AND OLD.pseudonymised_as IS NULL
           AND current_setting('hemhub.audit_pseudonymising', true) = NEW.pseudonymised_as::text
           AND NEW.content_salt IS NULL
           AND (NEW.id, NEW.at, NEW.subject, NEW.role, NEW.tenant_id, NEW.action, NEW.chain_seq,
                NEW.content_digest, NEW.prev_hash, NEW.row_hash)
               IS NOT DISTINCT FROM
               (OLD.id, OLD.at, OLD.subject, OLD.role, OLD.tenant_id, OLD.action, OLD.chain_seq,
                OLD.content_digest, OLD.prev_hash, OLD.row_hash)
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'access-log rows are kept as written; add a row instead of changing one';
END
$$;
