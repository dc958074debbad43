-- The audit log is append-only (issue 11): no role, not even the owner, updates,
-- deletes or truncates its rows. The runtime roles have INSERT only on it anyway
-- (ingest.roles); this trigger also stops the owner and a superuser by mistake. Only
-- a deliberate, visible act (ALTER TABLE audit_log DISABLE TRIGGER, or dropping the
-- table) gets past it.
CREATE FUNCTION hemhub_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'access-log rows are kept as written; add a row instead of changing one';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hemhub_audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION hemhub_audit_log_append_only();
