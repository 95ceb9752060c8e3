"""The memory transport passes the public transport conformance suite; and its memory:// URLs."""

import subprocess
import sys

import pytest

from pca_core.api.errors import ConfigError, ConnectionFailed
from pca_core.api.transport import ConnectionState
from pca_core.builtin import memory
from pca_core.builtin.memory import MemoryTransport
from pca_core.config import TransportConfig
from pca_core.testing import Inbox, MemoryBroker, TransportConformance, build_plugin

pytest_plugins = ["pytester"]


class TestMemoryConformance(TransportConformance):
    plugin = "memory"

    @pytest.fixture
    def broker(self):
        broker = MemoryBroker()
        yield broker
        broker.close()


def test_the_suite_is_marked_and_skips_what_memory_does_not_offer(pytester):
    pytester.makepyfile("""
        import pytest
        from pca_core.testing import MemoryBroker, TransportConformance

        class TestMemory(TransportConformance):
            plugin = "memory"

            @pytest.fixture
            def broker(self):
                broker = MemoryBroker()
                yield broker
                broker.close()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "transport_conformance", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 20
    assert outcomes["skipped"] == 6  # three TLS tests, three redelivery tests
    assert "failed" not in outcomes and "errors" not in outcomes
    result.stdout.fnmatch_lines(["*does not declare capability 'tls'*"])
    result.stdout.fnmatch_lines(["*does not declare capability 'redelivery'*"])
    deselected = pytester.runpytest("-p", "no:cacheprovider", "-m", "not transport_conformance")
    assert deselected.parseoutcomes()["deselected"] == outcomes["passed"] + outcomes["skipped"]


def test_a_plugin_that_breaks_the_contract_fails_the_suite(pytester):
    pytester.makepyfile("""
        import pytest
        from pca_core.builtin.memory import MemoryTransport
        from pca_core.testing import MemoryBroker, TransportConformance

        class TextPayloads(MemoryTransport):   # accepts str payloads: breaks the contract
            def publish(self, topic, payload, **kw):
                super().publish(topic, payload.encode() if isinstance(payload, str) else payload, **kw)

        class TestBroken(TransportConformance):
            plugin = "memory"

            @pytest.fixture
            def transport_class(self):
                return TextPayloads

            @pytest.fixture
            def broker(self):
                broker = MemoryBroker()
                yield broker
                broker.close()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "not_bytes")
    result.assert_outcomes(failed=1)


def test_a_class_without_tls_broker_skips_tls_but_one_declaring_tls_must_provide_it(pytester):
    pytester.makepyfile("""
        import pytest
        from pca_core.api import Capability
        from pca_core.builtin.memory import MemoryTransport
        from pca_core.testing import MemoryBroker, TransportConformance

        class ClaimsTls(MemoryTransport):
            capabilities = MemoryTransport.capabilities | {Capability.TLS}

        class TestClaimsTls(TransportConformance):
            plugin = "memory"

            @pytest.fixture
            def transport_class(self):
                return ClaimsTls

            @pytest.fixture
            def broker(self):
                return MemoryBroker()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_tls_")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*declares capability 'tls', so the class must provide a tls_broker*"])


def test_importing_the_pytest_plugin_imports_no_transport_and_not_the_suite():
    code = ("import sys, pca_core.testing.plugin; "
            "print(sorted(m for m in sys.modules if m in ('pca_core.builtin.memory', "
            "'pca_core.runtime.discovery', "
            "'pca_core.testing.transport', 'stevedore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# memory:// URLs


def make(*urls, bus="default"):
    return build_plugin(MemoryTransport, TransportConfig(plugin="memory", urls=urls, options={"bus": bus}),
                        key="transport")


@pytest.fixture
def brokers():
    made = [MemoryBroker() for _ in range(2)]
    yield made
    for broker in made:
        broker.close()


def test_a_url_names_the_bus_and_overrides_the_bus_option(brokers):
    first, _ = brokers
    by_url = make(first.url, bus="ignored")
    by_option = make(bus=first.bus)
    by_url.connect()
    by_option.connect()
    inbox = Inbox()
    by_option.subscribe("a/#", inbox)
    by_url.publish("a/b", b"same bus")
    assert inbox.payloads == [b"same bus"]
    by_url.close()
    by_option.close()


def test_connect_takes_the_first_bus_that_is_up_in_list_order(brokers):
    first, second = brokers
    listeners = {broker.bus: Inbox() for broker in brokers}
    for broker in brokers:
        listener = make(broker.url)
        listener.connect()
        listener.subscribe("#", listeners[broker.bus])
    both = make(first.url, second.url)
    both.connect()
    both.publish("t", b"to the first")
    first.stop()
    late = make(first.url, second.url)
    late.connect()
    late.publish("t", b"to the second")
    assert listeners[first.bus].payloads == [b"to the first"]
    assert listeners[second.bus].payloads == [b"to the second"]


def test_connect_raises_connection_failed_when_every_bus_is_down(brokers):
    states = []
    transport = make(brokers[0].dead_url, brokers[1].dead_url)
    transport.add_state_listener(lambda state, error: states.append(state))
    with pytest.raises(ConnectionFailed, match="every memory bus is down"):
        transport.connect()
    assert states == []
    with pytest.raises(ConnectionFailed, match="is down"):
        make(brokers[0].dead_url).connect()


def test_a_transport_stays_on_its_bus_through_an_outage(brokers):
    first, second = brokers
    transport = make(first.url, second.url)
    states = []
    transport.add_state_listener(lambda state, error: states.append(state))
    transport.connect()
    first.restart()
    assert states == [ConnectionState.CONNECTED, ConnectionState.LOST, ConnectionState.RECONNECTED]
    transport.close()


@pytest.mark.parametrize("url", ["mqtt://localhost:1883", "localhost:1883", "memory://"])
def test_a_url_that_is_not_memory_is_a_config_error(url):
    with pytest.raises(ConfigError, match=r"transport\.urls"):
        make(url)
    assert memory.bus_name("MEMORY://x") == "x"
