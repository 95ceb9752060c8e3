"""``pca status``, ``pca maintenance`` and ``pca sync``: one command to the running agent, its answer printed.

``maintenance`` waits (``--wait`` seconds) for the phase to change and prints the phase it changed to, by
asking ``status`` again, so that the agent's control thread never waits for its lifecycle.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pca_core.agent import control
from pca_core.agent.phase import Phase

_POLL = 0.1  # seconds between two looks at the phase while waiting for it to change


def run_control(socket: Path, args: argparse.Namespace) -> int:
    """Sends ``args.command`` to the agent at ``socket`` and prints its answer; returns the exit code.

    Raises:
        ControlError: no agent answers, or it refused the command (its reason is the message).
    """
    if args.command == "maintenance":
        reply = _maintenance(socket, args)
    else:
        reply = control.call(socket, args.command)
    if args.json:
        print(json.dumps(reply))
    elif args.command == "status":
        _print_status(reply)
    elif args.command == "maintenance":
        print(f"phase: {reply['phase']}")
    else:
        print(f"{args.command}: requested")
    return 0


def _maintenance(socket: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Asks for the change, then waits for the phase to leave the one the agent was in."""
    reply = control.call(socket, "maintenance", mode=args.mode, stop=args.stop)
    before, deadline = reply["phase"], time.monotonic() + max(args.wait, 0.0)
    target = str(Phase.MAINTENANCE) if args.mode == "on" else None  # off: anything but maintenance
    while True:
        try:
            phase = control.call(socket, "status")["phase"]
        except control.AgentNotRunning:  # maintenance on --stop: the agent went away once done
            return {**reply, "phase": "stopped"}
        changed = phase == target if target is not None else phase != before
        if changed or time.monotonic() >= deadline:
            return {**reply, "phase": phase, "changed": changed}
        time.sleep(_POLL)


def _print_status(reply: dict[str, Any]) -> None:
    for key, value in reply.items():
        if key == "since" and isinstance(value, int | float):
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        print(f"{key:<18} {'-' if value is None else value}")
