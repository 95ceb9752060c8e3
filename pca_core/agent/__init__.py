"""The agent: its lifecycle and the services it drives (artifacts, extensions, outbox, control, health)."""
