"""What the throughput benchmarks share: the message they send, and a counter to wait on."""

from __future__ import annotations

import argparse
import json
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


def arguments(doc: str) -> argparse.Namespace:
    """The command line every throughput benchmark takes: ``--json``, ``--messages``, ``--rounds``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round (20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each; the best counts (3)")
    return parser.parse_args()


RoundFn = Callable[..., float]


def compare(args: argparse.Namespace, server: object, raw_round: RoundFn, pca_round: RoundFn,
            labels: tuple[str, str, str]) -> int:
    """Runs ``args.rounds`` rounds of the raw receiver and of pca on ``server`` and prints the figures.

    ``raw_round(server, messages, tally)`` and ``pca_round(server, messages, tally, threads)`` return the
    seconds of one drain and add their sent and received counts to ``tally``; the last pca round also
    fills ``threads``. ``labels`` are the heading, then the names of the raw and pca receivers.
    """
    raw, pca = [], []
    threads: dict[str, int] = {}
    tally = dict.fromkeys(("raw_sent", "raw_received", "pca_sent", "pca_received"), 0)
    for round_ in range(args.rounds):
        raw.append(raw_round(server, args.messages, tally))
        pca.append(pca_round(server, args.messages, tally, threads if round_ == args.rounds - 1 else None))
    raw_rate, pca_rate = args.messages / min(raw), args.messages / min(pca)
    figures = {"messages": args.messages, "rounds": args.rounds, "payload_bytes": len(PAYLOAD),
               "raw_msgs_per_s": round(raw_rate), "pca_msgs_per_s": round(pca_rate),
               "ratio_pca_vs_raw": round(pca_rate / raw_rate, 3), "threads_before": threads["before"],
               "threads_after": threads["after"], **tally}
    if args.json:
        print(json.dumps(figures))
        return 0
    heading, raw_name, pca_name = labels
    print(f"{args.messages:,} x {len(PAYLOAD)} bytes {heading}, best of {args.rounds}")
    print(f"  {raw_name:<30}{figures['raw_msgs_per_s']:>9,} msgs/s")
    print(f"  {pca_name:<30}{figures['pca_msgs_per_s']:>9,} msgs/s   "
          f"{figures['ratio_pca_vs_raw']:.3f}x raw (goal >= 0.8)")
    print(f"  {'threads (pca run)':<30}{figures['threads_before']} before a live burst, "
          f"{figures['threads_after']} after (goal: equal)")
    print(f"  {'messages received / sent':<30}raw {tally['raw_received']:,} / {tally['raw_sent']:,}, "
          f"pca {tally['pca_received']:,} / {tally['pca_sent']:,} (every round, the live burst too)")
    return 0
