"""The agent's local control channel: a Unix socket that only the agent's owner (and root) may use.

``pca status``, ``pca maintenance`` and ``pca sync`` talk to the running agent through it. The protocol is one
JSON object per line and one request per connection::

    request:  {"command": "status", "arguments": {...}}
    reply:    {"ok": true, "result": {...}}   or   {"ok": false, "error": "a message for a person"}

The server runs on one thread for its whole life and serves up to ``MAX_CONNECTIONS`` connections at once;
commands are registered by the agent, this module knows none of them.
"""


from pca_core.agent.control.client import call
from pca_core.agent.control.protocol import (
    MAX_CONNECTIONS,
    MAX_REQUEST_BYTES,
    AgentAlreadyRunning,
    AgentNotRunning,
    Command,
    CommandFailed,
    ControlError,
)
from pca_core.agent.control.server import ControlServer

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_REQUEST_BYTES",
    "AgentAlreadyRunning",
    "AgentNotRunning",
    "Command",
    "CommandFailed",
    "ControlError",
    "ControlServer",
    "call",
]
