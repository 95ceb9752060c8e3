"""pca's transport conformance suite, run against the redis plugin and test-owned redis-server processes.

The ``broker`` and ``tls_broker`` fixtures (``pca_core.testing.Broker`` implementations) come from this
directory's conftest; the suite keeps reconnects fast by itself.
"""

from pca_core.testing import TransportConformance


class TestRedisConformance(TransportConformance):
    plugin = "redis"
