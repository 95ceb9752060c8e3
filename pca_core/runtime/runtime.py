"""The running agent's machinery: plugins, dispatcher and scheduler, started and stopped in order."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from pca_core.api.artifact_repo import ArtifactRepo
from pca_core.api.errors import AuthenticationError, ConnectionFailed, PcaError
from pca_core.api.event_handler import EventHandler
from pca_core.api.log_publisher import LogPublisher
from pca_core.api.transport import ConnectionState, Message, Transport
from pca_core.config import Config
from pca_core.runtime import discovery
from pca_core.runtime.dispatcher import Dispatcher
from pca_core.runtime.plugins import select
from pca_core.runtime.scheduler import Scheduler
from pca_core.stratos.state import AgentState
from pca_core.stratos.topics import AGENT_SUBSCRIPTIONS

_log = logging.getLogger(__name__)


class Runtime:
    """Loads the configured plugins and runs the agent's threads until :meth:`stop`.

    Args:
        config: the effective configuration.
        source: the configuration file, for error messages.
        on_message: called on the dispatcher thread for every message of the agent's subscriptions;
            the default applies it to :attr:`state`.

    Attributes:
        state: the agent's models (topology, tenants, signups, domain mappings).
    """

    def __init__(self, config: Config, *, source: str = "config",
                 on_message: Callable[[Message], None] | None = None) -> None:
        self.config = config
        self.source = source
        self.state = AgentState()
        self.on_message = on_message or self._apply
        self.dispatcher = Dispatcher(config.agent.dispatch_queue_size,
                                     queue_bytes=config.agent.dispatch_queue_bytes,
                                     max_message_size=config.transport.max_message_size)
        self.scheduler = Scheduler(workers=config.agent.workers)
        self.transport: Transport | None = None
        self.publishers: list[LogPublisher] = []
        self.handlers: list[EventHandler] = []
        self.artifact_repo: ArtifactRepo | None = None
        self._closers: list[Callable[[float], object]] = []
        self._drains: list[Callable[[float], bool]] = []

    def load(self, environ: Mapping[str, str] | None = None) -> None:
        """Loads, checks and builds every selected plugin (none other is imported).

        The artifact repository is selected only when the payload has ``REPO_URL``; one given to the
        runtime beforehand is kept.

        Args:
            environ: the environment the configuration was loaded with (to name the variable that set a
                value in an error); the process's by default.

        Raises:
            ConfigErrors: every problem with the selected plugins (not installed, broken, of another API
                version, invalid options, refused by their own checks), as ``pca config check`` reports.
        """
        for chosen in select(self.config, self.source, environ):
            if chosen.group == discovery.ARTIFACT_REPOS and self.artifact_repo is not None:
                continue
            plugin = chosen.cls(chosen.config, chosen.options)
            if chosen.group == discovery.TRANSPORTS:
                self.transport = plugin  # type: ignore[assignment]
            elif chosen.group == discovery.LOG_PUBLISHERS:
                self.publishers.append(plugin)  # type: ignore[arg-type]
            elif chosen.group == discovery.ARTIFACT_REPOS:
                self.artifact_repo = plugin  # type: ignore[assignment]
            else:
                self.handlers.append(plugin)  # type: ignore[arg-type]

    def start(self, stop: threading.Event, patterns: Sequence[str] = AGENT_SUBSCRIPTIONS) -> bool:
        """Starts the threads, connects (retrying until ``stop`` is set) and subscribes to ``patterns``.

        Returns:
            False when ``stop`` was set before a connection was made.
        """
        if self.transport is None:
            self.load()
        assert self.transport is not None
        self.scheduler.start()
        self.dispatcher.start()
        self.transport.add_state_listener(self._log_state)
        if not self._connect(self.transport, stop):
            return False
        self.subscribe(patterns)
        return True

    def subscribe(self, patterns: Sequence[str]) -> None:
        """Subscribes :attr:`on_message` (through the dispatcher) to each pattern."""
        assert self.transport is not None
        for pattern in patterns:
            self.transport.subscribe(pattern, self.dispatcher.wrap(self.on_message))
            _log.info("subscribed to %r", pattern)

    def on_stop(self, closer: Callable[[float], object]) -> None:
        """Registers ``closer(seconds_left)`` to run at :meth:`stop`.

        Closers run after in-flight work finished and before the plugins close, in the reverse order of
        registration.
        """
        self._closers.append(closer)

    def on_drain(self, drain: Callable[[float], bool]) -> None:
        """Registers ``drain(seconds_left)`` to run at :meth:`stop`, to finish work of a thread of its own.

        Drains run once intake has stopped and before the scheduler stops, so that the work may still use
        the scheduler; each returns whether its work finished.
        """
        self._drains.append(drain)

    def _connect(self, transport: Transport, stop: threading.Event) -> bool:
        backoff = self.config.transport.backoff()
        while not stop.is_set():
            try:
                transport.connect(timeout=self.config.transport.connect_timeout)
                return True
            except (ConnectionFailed, AuthenticationError) as exc:
                delay = backoff.next()
                _log.error("%s; retrying in %.1f seconds", exc, delay)
            if stop.wait(delay):
                return False
        return False

    def stop(self, timeout: float | None = None) -> bool:
        """Stops intake, lets in-flight work finish within ``timeout`` seconds, then closes the plugins.

        Returns:
            True when all in-flight work finished before the deadline.
        """
        deadline = time.monotonic() + (self.config.agent.shutdown_timeout if timeout is None else timeout)

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        finished = self.dispatcher.stop(left())
        for drain in self._drains:
            finished = drain(left()) and finished
        finished = self.scheduler.shutdown(left()) and finished
        for closer in reversed(self._closers):
            try:
                closer(left())
            except (PcaError, OSError) as exc:
                _log.warning("shutting down: %s", exc)
        repos = [self.artifact_repo] if self.artifact_repo is not None else []
        for plugin in (*self.handlers, *repos, *self.publishers):
            try:
                if isinstance(plugin, LogPublisher):
                    plugin.flush(left())
                    plugin.close(left())
                else:
                    plugin.close()
            except (PcaError, OSError) as exc:
                _log.warning("closing %s: %s", type(plugin).__name__, exc)
        if self.transport is not None:
            try:
                self.transport.close(max(left(), 1.0))
            except PcaError as exc:
                _log.warning("closing the transport: %s", exc)
        if not finished:
            _log.warning("shutdown deadline passed with work still in flight; it was abandoned")
        return finished

    def run(self, stop: threading.Event) -> bool:
        """Starts, waits for ``stop``, and stops; returns what :meth:`stop` returned."""
        try:
            if self.start(stop):
                _log.info("agent running; waiting for a stop signal")
                stop.wait()
        finally:
            _log.info("shutting down")
            finished = self.stop()
        _log.info("stopped")
        return finished

    def _apply(self, message: Message) -> None:
        _log.debug("received %s (%d bytes)", message.topic, len(message.payload))
        self.state.handle(message)

    @staticmethod
    def _log_state(state: ConnectionState, error: BaseException | None) -> None:
        # The one line an operator sees about the connection; transports log their details at DEBUG.
        if state is ConnectionState.LOST:
            _log.warning("transport connection lost: %s", error)
        else:
            _log.info("transport %s", state.value)
