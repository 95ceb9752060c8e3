"""The Stratos topics the agent subscribes to."""

from __future__ import annotations

AGENT_SUBSCRIPTIONS = (
    "topology/#",
    "instance/notifier/#",
    "tenant/#",
    "domain/mapping/#",
    "application/signup/#",
)
"""What the agent listens to: the Stratos topic roots it acts on (not the original's ``instance/#``)."""
