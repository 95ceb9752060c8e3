#!/usr/bin/env python3
"""MQTT throughput: a pca-mqtt subscription into the core dispatcher, against a raw paho subscriber.

One Mosquitto of the benchmark's own (a free port on 127.0.0.1, no queue limit) serves both runs. Each run
drains the same burst: a subscriber's persistent session is created, a separate paho publisher client puts
50,000 MemberActivatedEvent messages (the Gson sample, 499 bytes) into it at QoS 1 while the subscriber is
away, and the clock runs from the subscriber's connect to its 50,000th message:

- raw: a paho client (``loop_start()``) whose ``on_message`` counts;
- pca: ``MqttTransport`` with the subscription wrapped by ``Dispatcher.wrap``, as the agent's runtime does,
  so each message crosses to the dispatcher thread, where the handler counts. With its persistent session
  it acknowledges after handling: the dispatcher acks each message once the handler ran, and the PUBACK
  leaves then (in arrival order);
- pca, PUBACK on receipt: the same, with paho acknowledging each message as it arrives instead (switched
  through the transport's internals; no configuration does this with a persistent session). The
  difference is what acknowledging after handling costs.

All subscribe at QoS 1 (PUBACK per message). Each figure is the best of several rounds. After its timed
drain the pca transport stays connected for a live burst of another 50,000 messages, to count threads:
``threads_before`` is taken once it is connected and idle, ``threads_after`` once the live burst was
handled (goal: equal).

Usage: python bench/mqtt_throughput.py [--json] [--messages N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from _throughput import PAYLOAD, TIMEOUT, Counter, timed_drain
from paho.mqtt.enums import CallbackAPIVersion
from pca_mqtt import MqttOptions, MqttTransport

from pca_core.config import TransportConfig

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "topology/MemberActivatedEvent"
PATTERN = "topology/#"
def paho_client(client_id: str, *, persistent: bool = False) -> mqtt.Client:
    """A paho client with the callback API pca uses."""
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)


def create_session(port: int, client_id: str) -> None:
    """Creates ``client_id``'s persistent session with a QoS 1 subscription, then leaves."""
    client = paho_client(client_id, persistent=True)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(PATTERN, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def end_session(port: int, client_id: str) -> None:
    """Removes ``client_id``'s session from the broker (a clean-session connect)."""
    client = paho_client(client_id)
    client.connect("127.0.0.1", port)
    client.disconnect()


def publish_burst(port: int, messages: int) -> None:
    """The publisher: ``messages`` QoS 1 publishes, returning once every PUBACK is in."""
    client = paho_client("bench-publisher")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(TOPIC, PAYLOAD, qos=1) for _ in range(messages)]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
    client.disconnect()
    client.loop_stop()


def raw_round(port: int, messages: int) -> float:
    """Seconds a raw paho subscriber takes to drain a burst from its session."""
    client_id = f"bench-raw-{uuid.uuid4().hex[:8]}"
    create_session(port, client_id)
    publish_burst(port, messages)
    counter = Counter()
    client = paho_client(client_id, persistent=True)
    client.on_message = lambda _client, _userdata, message: counter.add(message)
    start = time.perf_counter()
    client.connect("127.0.0.1", port)
    client.loop_start()
    counter.wait(messages)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    end_session(port, client_id)
    return elapsed


def pca_round(port: int, messages: int, threads: dict[str, int] | None, *,
              ack_on_receipt: bool = False) -> float:
    """Seconds pca-mqtt plus the dispatcher take to drain a burst; fills ``threads`` if given."""
    client_id = f"bench-pca-{uuid.uuid4().hex[:8]}"
    create_session(port, client_id)
    publish_burst(port, messages)
    config = TransportConfig(urls=(f"mqtt://127.0.0.1:{port}",), client_id=client_id)
    transport = MqttTransport(config, MqttOptions(persistent_session=True))
    if ack_on_receipt:  # the counterfactual: paho's PUBACK on receipt, through the transport's internals
        transport._link.client.manual_ack_set(False)
        transport._link.pump._manual_ack = False
    elapsed, _ = timed_drain(transport, PATTERN, messages, threads, lambda: publish_burst(port, messages))
    end_session(port, client_id)
    return elapsed


def main() -> int:
    """Runs the benchmark and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per burst (50,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each; the best counts (5)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the test-owned Mosquitto of tests/support
    from tests.support.mosquitto import Mosquitto

    broker = Mosquitto(extra=("max_queued_messages 0",))  # keep the whole burst for the absent subscriber
    broker.start()
    try:
        raw, pca, on_receipt = [], [], []
        threads: dict[str, int] = {}
        for round_ in range(args.rounds):
            raw.append(raw_round(broker.port, args.messages))
            pca.append(pca_round(broker.port, args.messages, threads if round_ == args.rounds - 1 else None))
            on_receipt.append(pca_round(broker.port, args.messages, None, ack_on_receipt=True))
    finally:
        broker.stop()
    raw_rate, pca_rate = args.messages / min(raw), args.messages / min(pca)
    on_receipt_rate = args.messages / min(on_receipt)
    figures = {
        "messages": args.messages,
        "payload_bytes": len(PAYLOAD),
        "raw_msgs_per_s": round(raw_rate),
        "pca_msgs_per_s": round(pca_rate),
        "ratio_pca_vs_raw": round(pca_rate / raw_rate, 3),
        "pca_ack_on_receipt_msgs_per_s": round(on_receipt_rate),
        "ratio_ack_after_handling_vs_on_receipt": round(pca_rate / on_receipt_rate, 3),
        "threads_before": threads["before"],
        "threads_after": threads["after"],
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"burst of {args.messages:,} x {len(PAYLOAD)} bytes at QoS 1, drained from a persistent session")
    print(f"  raw paho subscriber          {figures['raw_msgs_per_s']:>9,} msgs/s")
    print(f"  pca-mqtt into the dispatcher {figures['pca_msgs_per_s']:>9,} msgs/s   "
          f"{figures['ratio_pca_vs_raw']:.3f}x raw (goal >= 0.8)")
    print(f"  the same, PUBACK on receipt  {figures['pca_ack_on_receipt_msgs_per_s']:>9,} msgs/s   "
          f"acknowledging after handling: {figures['ratio_ack_after_handling_vs_on_receipt']:.3f}x of it")
    print(f"  threads (pca run)            {figures['threads_before']} before a live burst, "
          f"{figures['threads_after']} after (goal: equal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
