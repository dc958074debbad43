-- Commands to hubs (issue 13: a data reset that is proven, not assumed).
--
-- One row per command the backend asked a hub to carry out (ingest/commands.py): a
-- device wipe when a device comes back, a hub wipe when a hub does. The command itself
-- travels through the hub link's outbox (hub_outbound, written in the same
-- transaction); the hub answers on hemhub/v1/hubs/{hub_id}/results, and ingest records
-- the outcome here. A device goes back to stock only after its latest wipe_device
-- command says 'wiped' (or a person overrides, recorded in the device's state changes).
CREATE TABLE hub_commands (
    id            uuid PRIMARY KEY,
    hub_id        text NOT NULL REFERENCES hubs(id),
    -- the device to wipe or forget; NULL for wipe_hub
    device_id     uuid REFERENCES devices(id),
    kind          text NOT NULL CHECK (kind IN ('wipe_device', 'forget_device', 'wipe_hub')),
    -- what the hub was told: the radio address and the profile to wipe it by
    address       text,
    profile       text,
    requested_by  text NOT NULL CHECK (length(btrim(requested_by)) BETWEEN 1 AND 200),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    -- the hub link's row that carries the command, and when the broker took it
    outbound_id   bigint REFERENCES hub_outbound(id),
    published_at  timestamptz,
    status        text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'wiped', 'unsupported', 'failed')),
    -- the hub's why (unsupported, failed), or its note (wiped)
    reason        text,
    -- when the hub finished (its clock), and when ingest recorded the result
    finished_at   timestamptz,
    recorded_at   timestamptz,
    -- the whole result as the hub sent it (bond_removed, records_before, ...)
    result        jsonb,
    CHECK ((kind = 'wipe_hub') = (device_id IS NULL)),
    CHECK ((status = 'pending') = (finished_at IS NULL))
);
CREATE INDEX hub_commands_device ON hub_commands (device_id, requested_at DESC)
    WHERE device_id IS NOT NULL;
CREATE INDEX hub_commands_hub ON hub_commands (hub_id, requested_at DESC);
CREATE INDEX hub_commands_pending ON hub_commands (requested_at) WHERE status = 'pending';

-- published_at follows the hub link's stamp on the outbox row that carries the command.
CREATE FUNCTION hub_commands_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hub_commands SET published_at = NEW.published_at
    WHERE outbound_id = NEW.id AND published_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER hub_outbound_published_commands
    AFTER UPDATE OF published_at ON hub_outbound
    FOR EACH ROW
    WHEN (NEW.topic_kind = 'commands' AND NEW.published_at IS NOT NULL
          AND OLD.published_at IS NULL)
    EXECUTE FUNCTION hub_commands_published();
