"""The hub's software update: verified fetch, A/B slots, device firmware."""
