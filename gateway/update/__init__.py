"""The hub's updates: verified fetch, A/B slots of its software, its devices' firmware."""
