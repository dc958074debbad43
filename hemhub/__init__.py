"""hemhub: digital self-monitoring in home care (shared core: contract, settings, CLI)."""

__version__ = "0.1.0"
