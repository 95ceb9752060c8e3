"""The agent's metrics and health for the operator's HTTP endpoint (``[http] listen``).

Read from the agent's components when scraped: counting costs each component a plain integer, and no
thread or timer is added. Prometheus' text format comes from prometheus_client, imported only when the
endpoint is configured. The metrics (docs/operations.md says which to alert on):

- ``pca_info{version, plugin_api}``, ``pca_lifecycle_phase{phase}`` (1 for the current phase),
  ``pca_ready`` (active and connected: what ``/readyz`` answers 200 for);
- ``pca_transport_connected``, ``pca_transport_reconnects_total``;
- ``pca_status_events_queued`` (in the outbox), ``pca_status_events_published_total``;
- ``pca_messages_received_total``, ``pca_messages_dropped_total{reason}``;
- ``pca_artifact_syncs_total{result}``, ``pca_artifact_sync_duration_seconds`` (a summary);
- ``pca_extension_runs_total``, ``pca_extension_failures_total``;
- ``pca_records_published_total{publisher}``, ``pca_records_dropped_total{publisher}``,
  ``pca_records_buffered{publisher}``; ``pca_log_tailer_lag_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pca_core._version import __version__
from pca_core.agent.control.http import HttpReply, HttpService
from pca_core.agent.phase import Phase
from pca_core.api.plugin import PLUGIN_API_VERSION
from pca_core.api.transport import ConnectionState

if TYPE_CHECKING:
    from pca_core.agent.lifecycle import Agent

__all__ = ["http_service", "is_ready", "phase_label"]

_CONNECTED = (ConnectionState.CONNECTED, ConnectionState.RECONNECTED)


def phase_label(phase: Phase) -> str:
    """The ``phase`` label of a lifecycle phase: its name in lower case (``waiting_for_topology``)."""
    return str(phase.name).lower()


def is_ready(agent: Agent) -> bool:
    """Whether the member is active and the transport connected."""
    transport = agent.runtime.transport
    return agent.phase is Phase.ACTIVE and transport is not None and transport.state in _CONNECTED


def http_service(agent: Agent, address: tuple[str, int]) -> HttpService:
    """The endpoint's routes for ``agent``: ``/metrics``, ``/healthz`` and ``/readyz``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(agent))

    def metrics() -> HttpReply:
        return HttpReply(HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)

    def healthz() -> HttpReply:
        return HttpReply(HTTPStatus.OK, f"ok: {agent.phase}\n".encode())

    def readyz() -> HttpReply:
        if is_ready(agent):
            return HttpReply(HTTPStatus.OK, b"ready\n")
        transport = agent.runtime.transport
        state = transport.state.value if transport is not None else "none"
        waiting = agent.waiting_for()
        text = f"not ready: {agent.phase}, transport {state}"
        if waiting:
            text += f"; waiting for {waiting}"
        return HttpReply(HTTPStatus.SERVICE_UNAVAILABLE, f"{text}\n".encode())

    return HttpService(address, {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz})


class _Collector:
    """A prometheus_client collector reading the agent's counters at each scrape."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
            SummaryMetricFamily,
        )

        agent = self._agent
        runtime = agent.runtime
        yield InfoMetricFamily("pca", "the agent's version and the plugin API it offers",
                               value={"version": __version__,
                                      "plugin_api": ".".join(map(str, PLUGIN_API_VERSION))})
        phases = GaugeMetricFamily("pca_lifecycle_phase", "1 for the lifecycle phase the agent is in",
                                   labels=["phase"])
        for phase in Phase:
            phases.add_metric([phase_label(phase)], 1.0 if phase is agent.phase else 0.0)
        yield phases
        yield GaugeMetricFamily("pca_ready", "1 when the member is active and the transport connected",
                                value=1.0 if is_ready(agent) else 0.0)
        transport = runtime.transport
        connected = transport is not None and transport.state in _CONNECTED
        yield GaugeMetricFamily("pca_transport_connected", "1 while the transport is connected",
                                value=1.0 if connected else 0.0)
        yield CounterMetricFamily("pca_transport_reconnects", "connections lost and got back",
                                  value=agent.reconnects)
        yield GaugeMetricFamily("pca_status_events_queued", "status events waiting in the outbox",
                                value=agent.outbox.depth)
        yield CounterMetricFamily("pca_status_events_published", "status events the broker took",
                                  value=agent.outbox.published)
        dispatcher = runtime.dispatcher
        yield CounterMetricFamily("pca_messages_received", "messages received from the broker",
                                  value=dispatcher.received)
        dropped = CounterMetricFamily("pca_messages_dropped", "messages received and not handled",
                                      labels=["reason"])
        reasons = (("malformed", agent.state.malformed), ("unknown_event", agent.state.unknown),
                   ("too_large", dispatcher.dropped_oversize), ("queue_full", dispatcher.dropped_full),
                   ("stopping", dispatcher.dropped_stopping))
        for reason, count in reasons:
            dropped.add_metric([reason], count)
        yield dropped
        yield from self._artifacts(CounterMetricFamily, SummaryMetricFamily)
        extensions = agent.extensions
        yield CounterMetricFamily("pca_extension_runs", "extension scripts and event handlers run",
                                  value=extensions.runs)
        yield CounterMetricFamily("pca_extension_failures", "extension runs that failed or timed out",
                                  value=extensions.failures)
        yield from self._records(CounterMetricFamily, GaugeMetricFamily)

    def _artifacts(self, counter: Any, summary: Any) -> Iterator[Any]:
        artifacts = self._agent.artifacts
        ok, failed, seconds = (0, 0, 0.0) if artifacts is None else \
            (artifacts.syncs_ok, artifacts.syncs_failed, artifacts.sync_seconds)
        syncs = counter("pca_artifact_syncs", "artifact repository syncs", labels=["result"])
        syncs.add_metric(["ok"], ok)
        syncs.add_metric(["failed"], failed)
        yield syncs
        yield summary("pca_artifact_sync_duration_seconds", "how long artifact syncs took",
                      count_value=ok + failed, sum_value=seconds)

    def _records(self, counter: Any, gauge: Any) -> Iterator[Any]:
        telemetry = self._agent.telemetry
        sink = telemetry.sink
        published = counter("pca_records_published", "records a log publisher accepted", labels=["publisher"])
        dropped = counter("pca_records_dropped", "records dropped because a publisher's buffer was full",
                          labels=["publisher"])
        buffered = gauge("pca_records_buffered", "records waiting for a log publisher", labels=["publisher"])
        for name, count in sink.published.items():
            published.add_metric([name], count)
        for name, count in sink.dropped.items():
            dropped.add_metric([name], count)
        for name, count in sink.pending.items():
            buffered.add_metric([name], count)
        yield from (published, dropped, buffered)
        yield gauge("pca_log_tailer_lag_bytes", "bytes of the tailed files no publisher accepted yet",
                    value=telemetry.lag_bytes())
