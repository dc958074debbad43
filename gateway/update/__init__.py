"""Updates of the hub: its own software and its devices' firmware (issue 14)."""
