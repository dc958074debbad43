"""hemhub: device_drivers/drivers."""
