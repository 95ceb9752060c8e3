#!/usr/bin/env python3
"""Log throughput: lines appended to a tailed file, through pca to a receiver that acknowledges them.

It runs against a raw client loop that sends the same lines straight from the file. ``--sink thrift`` (the
default) uses a databridge receiver of the benchmark's own (the test receiver of
``tests/support/databridge.py``: a real Thrift server, TLS login on one free port, plain data on another,
in a process of its own, as a CEP server runs apart) and the Stratos log stream, one per round:

- raw: a Thrift client of the generated code logs in, defines the stream, and sends the file's lines in
  bundles of 500 events laid out as the Stratos agent laid them out (12 strings and a time stamp each),
  waiting for each ``publish`` reply; the clock runs from opening the file to the last reply;
- pca: the agent's own pipeline with its defaults: a ``LogTailer`` polling every ``logs.poll_interval``
  (0.25 s) and woken by its directory watch (``max_unsettled`` half the publisher's buffer, as the agent
  sets it), the ``RecordSink`` (batches of 500, a full batch delivered at once, the rest every second)
  and the ``thrift`` publisher, on a core ``Scheduler``. The clock runs from the first line written (the
  lines are made before it) to the receiver having every line. Half-way the file is rotated (renamed to
  ``.1``, a new one created), as logrotate does.

The receiver forgets the events of each round once they were counted, so that every round finds it the
same.

Each rate is the best of ``--rounds`` rounds. ``lost_lines`` counts lines written in pca's rounds that the
receiver never got, ``duplicate_lines`` those it got more than once (at least once allows them),
``errors`` what the receiver refused or found misaligned. The CPU seconds of the sending process and of
the receiver's are those of the best round of each: both share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500
LINE = "{n:08d} 10.0.0.11 - - [21/Dec/2015:10:00:00 +0000] \"GET /index.php?id={n} HTTP/1.1\" 200 5120"
TIMEOUT = 300.0
LOG_ATTRIBUTES = ("tenantID", "serverName", "appName", "logTime", "priority", "message", "logger", "ip",
                  "instance", "stacktrace")


def arguments() -> argparse.Namespace:
    """The command line: ``--json``, ``--lines``, ``--rounds``, ``--sink``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--lines", type=int, default=200_000, help="lines per round (200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each; the best counts (3)")
    parser.add_argument("--sink", choices=("thrift",), default="thrift", help="the receiver (thrift)")
    return parser.parse_args()


def lines(first: int, count: int) -> str:
    """``count`` log lines, numbered from ``first``."""
    return "".join(LINE.format(n=n) + "\n" for n in range(first, first + count))


def _serve(conn: Any, root: str, tmp: str) -> None:
    """The receiver's process: a databridge receiver, answering the benchmark's questions over ``conn``."""
    sys.path.insert(0, root)
    from tests.support.certs import TestCA
    from tests.support.databridge import DatabridgeReceiver

    ca = TestCA(Path(tmp) / "ca")
    with DatabridgeReceiver(ca.issue("localhost")) as receiver:
        conn.send((str(ca.ca_file), receiver.host, receiver.port, receiver.secure_port, receiver.url))
        answers = {
            "total": lambda _: len(receiver.events),
            "wait_total": lambda count: len(receiver.wait_for_events(count, TIMEOUT)),
            "cpu": lambda _: time.process_time(),
            "errors": lambda _: receiver.errors,
            "received": lambda member: [e.payload["message"] for e in receiver.take_events()
                                        if e.stream_id.startswith("logs.") and e.meta["memberId"] == member],
        }
        while True:
            command, argument = conn.recv()
            if command == "stop":
                return
            conn.send(answers[command](argument))


class Thrift:
    """The databridge side: a receiver in a process of its own, the raw client, pca's publisher options.

    The receiver runs apart, as a CEP or DAS server does, so its work shares no interpreter lock with the
    sender's.
    """

    def __init__(self, tmp: Path) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, str(ROOT), str(tmp)), daemon=True)
        self._process.start()
        self.ca_file, self.host, self.port, self.secure_port, url = self._conn.recv()
        self.options = {"urls": [url], "username": "admin", "password": "admin", "ca_file": self.ca_file}

    def ask(self, command: str, argument: Any = None) -> Any:
        """What the receiver answers to ``command`` (see ``_serve``)."""
        self._conn.send((command, argument))
        return self._conn.recv()

    def close(self) -> None:
        """Stops the receiver's process."""
        self._conn.send(("stop", None))
        self._process.join(10)

    def raw_round(self, path: Path, member: str) -> float:
        """Sends every line of ``path`` with the generated client, bundle by bundle; returns the seconds."""
        from pca_thrift._gen.data.ttypes import ThriftEventBundle
        from pca_thrift._gen.general import ThriftEventTransmissionService as Plain
        from pca_thrift._gen.secure import ThriftSecureEventTransmissionService as Secure
        from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
        from thrift.transport.TSocket import TSocket
        from thrift.transport.TTransport import TBufferedTransport

        def client(sock: socket.socket, service: Any) -> tuple[Any, TBufferedTransport]:
            handle = TSocket()
            handle.setHandle(sock)
            transport = TBufferedTransport(handle)
            return service.Client(TBinaryProtocolAccelerated(transport)), transport

        def publish(batch: list[str]) -> None:
            strings: list[str] = []
            for text in batch:
                strings += (stream_id, member, "0", "bench.domain", "", day, "", text, "", "", member, "")
            now = int(time.time() * 1000)
            plain.publish(ThriftEventBundle(sessionId=session, eventNum=len(batch), intAttributeList=[],
                                            longAttributeList=[now] * len(batch), doubleAttributeList=[],
                                            boolAttributeList=[], stringAttributeList=strings))

        started = time.perf_counter()
        context = ssl.create_default_context(cafile=self.ca_file)
        secure, secure_transport = client(context.wrap_socket(socket.create_connection(
            (self.host, self.secure_port)), server_hostname="localhost"), Secure)
        session = secure.connect("admin", "admin")
        plain, plain_transport = client(socket.create_connection((self.host, self.port)), Plain)
        day = time.strftime("%Y.%m.%d")
        attributes = ",".join(f'{{"name":"{a}", "type": "STRING"}}' for a in LOG_ATTRIBUTES)
        stream_id = plain.defineStream(session, f'{{"name":"logs.0.bench.domain.{day}","version":"1.0.0",'
                                                f'"metaData":[{{"name":"memberId", "type": "STRING"}}],'
                                                f'"payloadData":[{attributes}]}}')
        with path.open() as source:
            batch: list[str] = []
            for text in source:
                batch.append(text.rstrip("\n"))
                if len(batch) == BATCH:
                    publish(batch)
                    batch = []
            if batch:
                publish(batch)
        elapsed = time.perf_counter() - started
        secure.disconnect(session)
        secure_transport.close()
        plain_transport.close()
        return elapsed


def pca_round(sink: Thrift, tmp: Path, count: int, member: str) -> float:
    """Appends ``count`` lines to a tailed file (rotated half-way); returns the seconds until all arrived."""
    from pca_thrift import ThriftLogPublisher

    from pca_core.api import PublisherConfig
    from pca_core.config.schema import LogsConfig
    from pca_core.runtime.scheduler import Scheduler
    from pca_core.stratos.payload import Identity
    from pca_core.telemetry.records import RecordSink
    from pca_core.telemetry.streams import core_streams, log_fields
    from pca_core.telemetry.tailer import LogTailer
    from pca_core.testing import build_plugin

    identity = Identity(application_id="bench", service_name="bench", cluster_id="bench.domain",
                        tenant_id="-1234", multitenant=False, ports=(), member_id=member)
    path = tmp / f"{member}.log"
    path.write_text("")
    scheduler = Scheduler()
    scheduler.start()
    config = PublisherConfig(plugin="thrift", streams=("logs",), options=sink.options)
    publisher = build_plugin(ThriftLogPublisher, config, key="publishers[0]")
    records = RecordSink([publisher], scheduler, streams=core_streams(identity))
    records.start()
    tailer = LogTailer([str(path)], records, fields=log_fields(identity),
                       max_unsettled=max(1, records.capacity("logs") // 2))
    tailer.poll()  # the file is followed from here on, so the rotation below is followed too
    tailer.start(scheduler, LogsConfig().poll_interval)
    try:
        half = count // 2
        first, second = lines(0, half), lines(half, count - half)  # made before the clock: the app's work
        before = sink.ask("total")
        started = time.perf_counter()
        with path.open("a") as log:
            log.write(first)
        path.rename(path.with_name(path.name + ".1"))
        with path.open("a") as log:
            log.write(second)
        if sink.ask("wait_total", before + count) < before + count:
            raise RuntimeError(f"gave up waiting for {count} lines at the receiver")
        return time.perf_counter() - started
    finally:
        tailer.close()
        records.close(10)
        scheduler.shutdown(10)


def _timed(sink: Thrift, run: Any) -> tuple[float, float, float]:
    """Runs ``run()``; returns its seconds, this process's CPU seconds and the receiver's."""
    cpu, receiver_cpu = time.process_time(), sink.ask("cpu")
    seconds = run()
    return seconds, time.process_time() - cpu, sink.ask("cpu") - receiver_cpu


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments()
    sys.path.insert(0, str(ROOT))  # the test-owned receivers of tests/support
    expected = {LINE.format(n=n) for n in range(args.lines)}
    raw: list[tuple[float, float, float]] = []
    pca: list[tuple[float, float, float]] = []
    lost = duplicates = 0
    with tempfile.TemporaryDirectory(prefix="pca-bench-logs-") as directory:
        tmp = Path(directory)
        sink = Thrift(tmp)
        try:
            for _ in range(args.rounds):
                path = tmp / f"raw-{uuid.uuid4().hex[:8]}.log"
                path.write_text(lines(0, args.lines))
                member = f"raw-{uuid.uuid4().hex[:8]}"
                raw.append(_timed(sink, lambda: sink.raw_round(path, member)))  # noqa: B023 - called at once
                sink.ask("received", member)  # forgotten: each round starts with an empty receiver
                member = f"pca-{uuid.uuid4().hex[:8]}"
                pca.append(_timed(sink, lambda: pca_round(sink, tmp, args.lines, member)))  # noqa: B023
                got = sink.ask("received", member)
                lost += len(expected - set(got))
                duplicates += len(got) - len(set(got))
            errors = len(sink.ask("errors"))
        finally:
            sink.close()
    best_raw, best_pca = min(raw), min(pca)
    raw_rate, pca_rate = args.lines / best_raw[0], args.lines / best_pca[0]
    ratio = f"ratio_{args.sink}_vs_raw"
    figures = {"sink": args.sink, "lines": args.lines, "rounds": args.rounds,
               "line_bytes": len(LINE.format(n=0)) + 1, "raw_lines_per_s": round(raw_rate),
               "pca_lines_per_s": round(pca_rate), ratio: round(pca_rate / raw_rate, 3), "lost_lines": lost,
               "duplicate_lines": duplicates, "errors": errors,
               "raw_cpu_s": round(best_raw[1], 2), "raw_receiver_cpu_s": round(best_raw[2], 2),
               "pca_cpu_s": round(best_pca[1], 2), "pca_receiver_cpu_s": round(best_pca[2], 2)}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.lines:,} lines of {figures['line_bytes']} bytes to a {args.sink} receiver, "
          f"best of {args.rounds} (CPU seconds: sender / receiver)")
    print(f"  raw client loop from the file   {figures['raw_lines_per_s']:>9,} lines/s   "
          f"{figures['raw_cpu_s']} / {figures['raw_receiver_cpu_s']}")
    print(f"  pca: tailer, sink, publisher    {figures['pca_lines_per_s']:>9,} lines/s   "
          f"{figures['pca_cpu_s']} / {figures['pca_receiver_cpu_s']}   {figures[ratio]}x raw (goal >= 0.7)")
    print(f"  lost {lost}, duplicated {duplicates}, receiver errors {errors} (goal: 0 lost, 0 errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
