-- The medication robot's own low_battery event and the scheduled hub-status battery
-- check shared the rule name device_battery_low, so a scheduled run cleared the robot's
-- alert whenever some other battery was fine. The robot's rule is now
-- dispenser_battery_low (ingest/rules.py). Alerts a robot event opened carry the
-- reading that opened them; the scheduled check's never do.
UPDATE alerts SET rule = 'dispenser_battery_low'
WHERE rule = 'device_battery_low' AND first_reading_key IS NOT NULL;
