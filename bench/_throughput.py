"""What the throughput benchmarks share: the message they send, and a counter to wait on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pca_core.api.transport import Transport
from pca_core.runtime.dispatcher import Dispatcher

PAYLOAD = (
    b'{"serviceName":"php","clusterId":"php.php1.domain","clusterInstanceId":"php-tomcat-app-1",'
    b'"memberId":"php.member-1","networkPartitionId":"network-partition-1","partitionId":"partition-1",'
    b'"portMap":{"8243":{"protocol":"https","value":443,"proxy":8243},"8280":{"protocol":"http",'
    b'"value":80,"proxy":8280}},"memberPrivateIPs":["10.0.0.11","10.0.1.11"],"defaultPrivateIP":'
    b'"10.0.0.11","groupId":"tomcat-group","applicationId":"php-tomcat-app","memberPublicIPs":'
    b'["20.0.0.11"],"defaultPublicIP":"20.0.0.11"}'
)
"""The Gson sample of topology/MemberActivatedEvent (stratos/samples), byte for byte."""
TIMEOUT = 300.0
TIMEOUT = 300.0
"""Seconds a round may take before the benchmark gives up."""


class Counter:
    """Counts messages and lets a thread wait for a total."""

    def __init__(self) -> None:
        self.count = 0
        self._reached = threading.Condition()
        self.target = 0

    def add(self, _message: object = None) -> None:
        """Counts one message."""
        self.count += 1
        if self.count >= self.target:
            with self._reached:
                self._reached.notify_all()

    def wait(self, target: int) -> None:
        """Waits until ``target`` messages were counted."""
        with self._reached:
            self.target = target
            if not self._reached.wait_for(lambda: self.count >= target, TIMEOUT):
                raise RuntimeError(f"only {self.count} of {target} messages arrived")


def timed_drain(transport: Transport, pattern: str, messages: int, threads: dict[str, int] | None,
                refill: Callable[[], None]) -> tuple[float, int]:
    """Seconds ``transport`` and the core's dispatcher take to hand over ``messages`` waiting on ``pattern``.

    The subscription's handler is wrapped by ``Dispatcher.wrap``, as the agent's runtime does: each message
    crosses to the dispatcher thread, which counts it and acks it. The clock runs from ``connect()`` to
    the last message. With ``threads``, ``refill()`` then puts as many again while the transport stays
    connected, and the thread counts before and after that live burst go there. Returns the seconds and
    how many messages were counted in all; the transport is closed.
    """
    counter = Counter()
    dispatcher = Dispatcher()
    dispatcher.start()
    transport.subscribe(pattern, dispatcher.wrap(counter.add))
    start = time.perf_counter()
    transport.connect(timeout=10)
    counter.wait(messages)
    elapsed = time.perf_counter() - start
    if threads is not None:
        threads["before"] = threading.active_count()
        refill()
        counter.wait(2 * messages)
        threads["after"] = threading.active_count()
    transport.close(5)
    dispatcher.stop(5)
    return elapsed, counter.count
