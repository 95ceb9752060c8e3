"""The control channel's client: one command to the running agent, its result or a clear error."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from pca_core.agent.control.protocol import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    AgentNotRunning,
    CommandFailed,
    ControlError,
    check_length,
)


def call(path: Path, command: str, *, timeout: float = 30.0, **arguments: Any) -> dict[str, Any]:
    """Sends one command to the agent listening at ``path`` and returns its result.

    Args:
        path: the agent's control socket.
        command: the command's name, e.g. ``status``.
        timeout: seconds for the whole exchange: connecting, sending, and waiting for the reply.
        **arguments: the command's arguments; JSON-able values.

    Returns:
        The command's result.

    Raises:
        AgentNotRunning: no agent listens at ``path``.
        CommandFailed: the agent answered that the command failed; the message is the agent's.
        ControlError: the path is too long, permission was denied, the agent did not answer in time, or its
            answer was malformed.
    """
    path = Path(path)
    check_length(path)
    request = json.dumps({"command": command, "arguments": arguments}).encode() + b"\n"
    if len(request) > MAX_REQUEST_BYTES:
        raise ControlError(f"the request is too large ({len(request)} bytes, at most {MAX_REQUEST_BYTES})")
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(remaining())
            try:
                connection.connect(os.fspath(path))
            except FileNotFoundError:
                raise AgentNotRunning(f"no agent is running (no control socket at {path})") from None
            except ConnectionRefusedError:
                raise AgentNotRunning(f"no agent is running (nobody answers on {path})") from None
            except PermissionError:
                raise ControlError(
                    f"permission denied on {path}: run this as the agent's user or root") from None
            connection.settimeout(remaining())
            # The agent may have refused us and hung up already: its reply, read below, tells why.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.sendall(request)
            reply = bytearray()
            while len(reply) <= MAX_REPLY_BYTES:
                connection.settimeout(remaining())
                chunk = connection.recv(65536)
                reply += chunk
                if not chunk or b"\n" in chunk:
                    break
    except TimeoutError:
        raise ControlError(f"the agent at {path} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to the agent at {path}: {exc.strerror or exc}") from None
    return _result(command, path, bytes(reply))


def _result(command: str, path: Path, reply: bytes) -> dict[str, Any]:
    line, newline, _ = reply.partition(b"\n")
    if not newline and not line:
        raise ControlError(f"the agent at {path} closed the connection without replying")
    if not newline:
        raise ControlError(f"the agent at {path} sent an incomplete or too large reply")
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("ok"), bool):
        raise ControlError(f"the agent at {path} sent a malformed reply")
    if not message["ok"]:
        raise CommandFailed(command, str(message.get("error") or f"{command} failed"))
    result = message.get("result")
    if not isinstance(result, dict):
        raise ControlError(f"the agent at {path} sent a malformed reply (no result)")
    return result
