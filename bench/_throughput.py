"""What the throughput benchmarks share: the message they send, and a counter to wait on."""

from __future__ import annotations

import threading

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
