-- The health gate notices a target that goes silent after its update (issue 14): a
-- confirmed hub whose status, or a confirmed device that its hub neither saw nor read,
-- stays away longer than this window fails the gate and pauses the campaign
-- (ingest/campaign_engine.py). Campaigns created before this migration keep NULL: not
-- checked; new ones get the kind's default (ingest/campaigns.py) or the HMC's value.
ALTER TABLE ota_campaigns ADD COLUMN silence_window_s integer
    CHECK (silence_window_s IS NULL OR silence_window_s >= 10);
