-- A dead letter is kept once per message: the broker redelivers what was not yet
-- acknowledged after a reconnect, and a hub may send a rejected message again. The
-- digest identifies the message (topic and payload as received); a repeat counts a
-- delivery instead of adding a row.
ALTER TABLE dead_letters
    ADD COLUMN digest bytea,
    ADD COLUMN deliveries integer NOT NULL DEFAULT 1 CHECK (deliveries >= 1),
    ADD COLUMN last_received_at timestamptz;

UPDATE dead_letters
SET digest = sha256(convert_to(topic, 'UTF8') || '\x00'::bytea || payload),
    last_received_at = received_at;

-- Rows kept before this migration may repeat a message: the oldest keeps the digest.
UPDATE dead_letters d SET digest = NULL
WHERE EXISTS (
    SELECT 1 FROM dead_letters o WHERE o.digest = d.digest AND o.id < d.id
);

CREATE UNIQUE INDEX dead_letters_digest ON dead_letters (digest);
ALTER TABLE dead_letters ALTER COLUMN last_received_at SET DEFAULT now();
