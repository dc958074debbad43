"""The hub's updates: verified fetch (fetch.py), A/B slots (slots.py), device firmware
(device_firmware.py), and the reconciler that drives them from the desired state
(reconcile.py)."""
