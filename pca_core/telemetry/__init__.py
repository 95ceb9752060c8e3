"""Telemetry: records on their way to the log publishers, and the log tailer that produces them."""
