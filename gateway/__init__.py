"""hemhub: gateway."""
