-- The nurse's pages: who did what with an alert (with a note), and the indexes of the
-- triage queue and of a resident's chart.

-- A person's action on an alert, with its note: the alert row keeps only the latest
-- state, this keeps each step (acknowledged with a note, resolved with a note). The
-- steps go with their alert: erasing a resident (0024) deletes its alerts, notes too.
CREATE TABLE alert_events (
    id        bigserial PRIMARY KEY,
    alert_id  uuid NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    tenant_id text NOT NULL REFERENCES tenants(id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('acknowledged', 'resolved')),
    note      text
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

-- The triage queue: a principal's unresolved alerts, severity first, longest waiting
-- first; a partial index keeps it small however many resolved alerts pile up.
CREATE INDEX alerts_active_triage ON alerts (tenant_id, opened_at)
    WHERE status <> 'resolved';
