-- Messages to hubs (retained configuration, commands), written in the transaction that
-- made them necessary (a transactional outbox): a hub is told of a change if and only
-- if the change committed. The hub link (ingest/hub_link.py) publishes unsent rows in
-- id order and stamps published_at; published rows stay as the history of what each
-- hub was told.
CREATE TABLE hub_outbound (
    id           bigserial PRIMARY KEY,
    hub_id       text NOT NULL REFERENCES hubs(id),
    topic_kind   text NOT NULL CHECK (topic_kind IN ('config', 'commands')),
    payload      jsonb NOT NULL,
    retain       boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX hub_outbound_pending ON hub_outbound (id) WHERE published_at IS NULL;
CREATE INDEX hub_outbound_hub ON hub_outbound (hub_id, id);
