"""hemhub: device_drivers."""
