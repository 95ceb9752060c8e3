"""The control channel's protocol: a JSON object per line, a request per connection, limits and errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pca_core.api.errors import PcaError

Command = Callable[[dict[str, Any]], dict[str, Any]]
"""A control command: takes the request's arguments, returns a JSON-able reply (a JSON object)."""

MAX_REQUEST_BYTES = 64 * 1024
"""The largest request line the server reads, its newline included."""

MAX_CONNECTIONS = 8
"""The most connections the server serves at once; one more is refused with an error reply."""

MAX_REPLY_BYTES = 16 * 1024 * 1024
"""The most of a reply a client buffers."""

# sun_path holds the path and its terminating NUL: 108 bytes on Linux, 104 on the BSDs and macOS.
_MAX_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103


class ControlError(PcaError):
    """The control channel could not be used: no agent, a timeout, or a malformed exchange."""


class AgentNotRunning(ControlError):
    """No agent listens on the control socket (it does not exist, or nobody answers on it)."""


class AgentAlreadyRunning(ControlError):
    """A live agent already answers on the control socket this server was asked to use."""


class CommandFailed(ControlError):
    """The agent received the request and answered that the command failed.

    Attributes:
        command: the command that was requested.
    """

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        super().__init__(message)


class BadRequest(Exception):
    """A request the server answers with an error: its message goes to the client."""


def check_length(path: Path) -> None:
    """Raises ControlError when ``path`` is too long to be a Unix socket's address."""
    size = len(os.fsencode(path))
    if size > _MAX_PATH_BYTES:
        raise ControlError(f"the control socket path is too long for a Unix socket ({size} bytes, at most "
                           f"{_MAX_PATH_BYTES}): {path}; choose a shorter state directory")


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The command and arguments of one request line.

    Raises:
        BadRequest: the line is not a request.
    """
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"malformed request: not a JSON object ({exc})") from None
    if not isinstance(request, dict):
        raise BadRequest("malformed request: not a JSON object")
    name = request.get("command")
    if not isinstance(name, str) or not name:
        raise BadRequest("malformed request: 'command' must be a non-empty string")
    arguments = request.get("arguments", {})
    if not isinstance(arguments, dict):
        raise BadRequest("malformed request: 'arguments' must be a JSON object")
    return name, arguments
