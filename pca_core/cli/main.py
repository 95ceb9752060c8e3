"""The ``pca`` command.

Commands import what they need when they run, so ``pca --help`` loads no plugin and no client library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

_log = logging.getLogger("pca.cli")


class _Versions(argparse.Action):
    """``--version``: pca-core, the plugin API, plugin distributions and key libraries, from metadata."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        from pca_core.cli.versions import report

        print(report())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pca", description="pca: the cloud-instance agent for Stratos application clusters.")
    parser.add_argument("--version", action=_Versions, nargs=0,
                        help="print the versions of pca, the plugin API, the plugins and key libraries")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", default="plain", choices=("plain", "json"),
                        help="plain text or one JSON object per line (default plain)")
    parser.add_argument("--log-file", help="write the log to this file instead of stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", required=True,
                         help="a native .toml file, or a legacy Stratos agent.conf")
        sub.add_argument("--payload", help="the launch-params file (legacy default: "
                                           "payload/launch-params beside agent.conf)")

    run = commands.add_parser("run", help="run the agent")
    config_args(run)
    plugins = commands.add_parser("plugins", help="list the installed plugins and whether they load")
    plugins.add_argument("--json", action="store_true", help="print one JSON document")
    plugins.add_argument("--config", help="also check the plugins this configuration selects: exit 1 when "
                                          "one is not installed or does not load")
    plugins.add_argument("--payload", help="the launch-params file, with --config")
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_commands.add_parser(
        "check", help="validate a configuration and print it in effect, secrets masked")
    config_args(check)
    check.add_argument("--format", default="toml", choices=("toml", "json"),
                       help="how to print the effective configuration (default toml)")
    check.add_argument("--connect", action="store_true",
                       help="instead of printing it, build every selected plugin and try the broker, the "
                            "repository and the receivers; exit 1 if one fails")
    init = config_commands.add_parser(
        "init", help="write a commented starter configuration (runs as is against pca simulate)")
    init.add_argument("--legacy", metavar="AGENT_CONF", help="convert this legacy agent.conf instead")
    init.add_argument("--payload", help="with --legacy: its launch-params file (default "
                                        "payload/launch-params beside it)")
    init.add_argument("--output", metavar="FILE", help="write to FILE (mode 0600) instead of standard output")
    init.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    demo = commands.add_parser("demo", help="run the agent and a simulated control plane in one process")
    demo.add_argument("--transport", default="memory",
                      help="the transport plugin to run it over (default memory, in-process)")
    demo.add_argument("--url", action="append", default=[], help="a broker URL for that transport")
    simulate = commands.add_parser("simulate",
                                   help="play the Stratos control plane for the configured member")
    config_args(simulate)
    simulate.add_argument("--repo-url", help="send an ArtifactUpdatedEvent for this repository")
    simulate.add_argument("--cleanup-after-activation", action="store_true",
                          help="send InstanceCleanupMemberEvent once the member is active")

    def agent_args(sub: argparse.ArgumentParser) -> None:
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--config", help="the agent's configuration (to find its state directory)")
        where.add_argument("--state-dir", help="the agent's state directory (default /var/lib/pca)")
        sub.add_argument("--json", action="store_true", help="print the agent's answer as one JSON object")

    agent_args(commands.add_parser("status", help="the running agent's lifecycle and connection state"))
    maintenance = commands.add_parser(
        "maintenance", help="take the member out of service or back; prints the phase after the change")
    maintenance.add_argument("mode", choices=("on", "off"))
    maintenance.add_argument("--stop", action="store_true",
                             help="with on: shut the agent down gracefully once the event is out")
    maintenance.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                             help="how long to wait for the phase to change (default 30; 0: do not wait)")
    agent_args(maintenance)
    agent_args(commands.add_parser("sync", help="sync the artifacts now"))
    events = commands.add_parser("events", help="Stratos event tools")
    events_commands = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    events_check = events_commands.add_parser(
        "check", help="decode a captured message as the agent would and print it as JSON")
    events_check.add_argument("topic", help="the message's topic, e.g. topology/MemberActivatedEvent")
    events_check.add_argument("file", help="the message body (a file of bytes; - for standard input)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``pca`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    from pca_core.api.errors import PcaError
    from pca_core.cli import logsetup

    try:
        logsetup.configure(args.log_level, args.log_format, args.log_file)
    except (ValueError, OSError) as exc:
        print(f"pca: error: {exc}", file=sys.stderr)
        return 2
    try:
        code = _command(args)
        sys.stdout.flush()  # here, not at exit, so that a reader that went away is handled below
        return code
    except PcaError as exc:
        print(f"pca: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        # `pca status | head -1`: the reader has what it wanted. Nothing more reaches stdout, not even
        # the interpreter's last flush; the exit code is the one a shell gives a command SIGPIPE ended.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def _command(args: argparse.Namespace) -> int:
    """Runs the parsed command; returns its exit code."""
    if args.command == "run":
        return _run(args)
    if args.command == "plugins":
        return _plugins(args)
    if args.command == "config":
        return _config_init(args) if args.config_command == "init" else _config_check(args)
    if args.command == "events":
        return _events_check(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command in ("status", "maintenance", "sync"):
        return _control(args)
    from pca_core.cli.demo import demo

    return demo(args.transport, args.url)


def _stdout_gone() -> bool:
    """Whether standard output is a pipe that nobody reads any more (Linux flags its writing end POLLERR)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # not a real file, or no poll() here
        return False


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns pca_core.config.Config
    from pca_core import config

    loaded, warnings = config.load(args.config, getattr(args, "payload", None))
    for warning in warnings:
        _log.warning("%s", warning)
    return loaded


def _run(args: argparse.Namespace) -> int:
    from pca_core.agent.lifecycle import Agent
    from pca_core.runtime.runtime import Runtime

    runtime = Runtime(_load(args), source=args.config)
    runtime.load()
    stop = threading.Event()
    agent = Agent(runtime, stop)
    install_signal_handlers(stop, before_exit=agent.extensions.kill_now)
    try:
        if agent.start():
            _log.info("agent running; waiting for a stop signal")
            wait_for_stop(stop)
    finally:
        _log.info("Shutting down Stratos cartridge agent...")
        runtime.stop()
    _log.info("stopped")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import msgspec

    from pca_core.cli.simulator import Simulator
    from pca_core.runtime import discovery
    from pca_core.runtime.plugins import select

    config = _load(args)
    (chosen,) = select(config, args.config, groups=(discovery.TRANSPORTS,))
    # A client of its own beside the agent's: the agent's client id would make the broker drop one of them.
    transport = chosen.cls(msgspec.structs.replace(chosen.config, client_id=None), chosen.options)
    stop = threading.Event()
    install_signal_handlers(stop)
    transport.connect(timeout=config.transport.connect_timeout)
    simulator = Simulator(transport, config.identity, repo_url=args.repo_url,
                          cleanup_after_activation=args.cleanup_after_activation,
                          say=lambda text: print(text, flush=True), finished=stop)
    simulator.start()
    print(f"simulating the control plane for member {config.identity.member_id}; Ctrl-C to stop", flush=True)
    try:
        wait_for_stop(stop)  # a signal, or the member reported ready to shut down
    finally:
        simulator.close()
        transport.close(5.0)
    return 0


def _control(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pca_core.cli.control import run_control

    state_dir = args.state_dir or (_load(args).agent.state_dir if args.config else "/var/lib/pca")
    return run_control(Path(state_dir) / "control.sock", args)


def wait_for_stop(stop: threading.Event) -> None:
    """Waits on the main thread until ``stop`` is set.

    In slices: a signal the kernel delivers to another thread only flags the main thread, which runs
    the handler when it next wakes; an unbounded wait could sleep through it.
    """
    while not stop.wait(0.5):
        pass


def install_signal_handlers(stop: threading.Event, *,
                            before_exit: Callable[[], object] | None = None) -> None:
    """SIGTERM, SIGINT and SIGHUP set ``stop``; a second one calls ``before_exit`` and exits at once.

    SIGHUP does not reload the configuration (a changed transport or identity would need the agent
    rebuilt); it stops the agent gracefully, saying so, rather than killing it as its default action does.

    Args:
        stop: the event the agent waits on.
        before_exit: what must not outlive the process (the extensions' process groups); it must be quick
            and safe in a signal handler.
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            _log.warning("%s again: exiting now", name)
            if before_exit is not None:
                before_exit()
            os._exit(128 + signum)
        received.append(signum)
        if signum == signal.SIGHUP:
            _log.warning("SIGHUP: reloading the configuration is not supported; shutting down gracefully "
                         "(start pca again to apply a changed configuration)")
        else:
            _log.info("%s: shutting down gracefully (send it again to exit at once)", name)
        # Not stop.set() here: the handler runs on the main thread, which may be inside stop.wait()
        # holding the event's lock; setting it from a short-lived thread cannot deadlock.
        threading.Thread(target=stop.set, name="pca-signal").start()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)


def _plugins(args: argparse.Namespace) -> int:
    from pca_core.cli.plugin_list import plugins_command

    config = _load(args) if args.config else None
    return plugins_command(as_json=args.json, config=config, source=args.config)


def _events_check(args: argparse.Namespace) -> int:
    from pca_core.api.secrets import mask_data
    from pca_core.stratos import events

    try:
        payload = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"pca: error: {args.file}: cannot be read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        event = events.decode(args.topic, payload)
    except events.EventDecodeError as exc:
        where = f" at {exc.where}" if exc.where else ""
        print(f"pca: {args.file} does not fit {args.topic}{where}: {exc.why}", file=sys.stderr)
        return 1
    print(json.dumps({type(event).__name__: mask_data(json.loads(events.encode(event)))}, indent=2))
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from pca_core import config
    from pca_core.runtime.plugins import select

    loaded = _load(args)
    chosen = select(loaded, args.config)  # what pca run would refuse, this refuses too
    if args.connect:
        from pca_core.cli.connect import connect_command

        return connect_command(loaded, chosen, args.config)
    data = config.to_data(loaded)
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        import tomli_w

        print(tomli_w.dumps(data), end="")
    _log.info("%s: configuration is valid", args.config)
    return 0


def _config_init(args: argparse.Namespace) -> int:
    from pca_core.cli.init import init_command

    if args.payload and not args.legacy:
        print("pca: error: --payload goes with --legacy", file=sys.stderr)
        return 2
    return init_command(legacy=args.legacy, payload=args.payload, output=args.output, force=args.force)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
