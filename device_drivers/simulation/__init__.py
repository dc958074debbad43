"""hemhub: device_drivers/simulation."""
