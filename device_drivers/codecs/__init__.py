"""hemhub: device_drivers/codecs."""
