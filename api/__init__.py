"""hemhub: api."""
