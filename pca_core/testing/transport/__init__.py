"""The transport conformance suite: what every Transport plugin must do against a broker it can control.

Its parts, one concept each: :mod:`._base` (fixtures and helpers), :mod:`._messaging` (round trips,
misuse, wildcards), :mod:`._subscriptions` (unsubscribe), :mod:`._handlers` (threads, handlers,
acknowledgements), :mod:`._outages` (restarts, failover, timeouts, TLS), :mod:`._redelivery`.
"""

from pca_core.testing.transport._base import TransportFactory, requires
from pca_core.testing.transport._suite import TransportConformance

__all__ = ["TransportConformance", "TransportFactory", "requires"]
