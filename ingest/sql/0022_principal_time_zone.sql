-- The principal's time zone (IANA name): the web app shows every date and time in it
-- (GET /api/v1/me), whatever the browser's zone; Swedish municipalities by default.
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'Europe/Stockholm'
    CHECK (time_zone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$');
