"""The hub's update agent: verified fetch, A/B slots, device firmware."""
