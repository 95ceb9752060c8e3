#!/usr/bin/env python3
"""Log throughput: lines appended to a tailed file, through pca to a receiver that acknowledges them.

It runs against a raw client loop that sends the same lines straight from the file, to a receiver of the
benchmark's own in a process of its own (as a CEP server or a Fluentd runs apart), one round of each in
turn:

- ``--sink thrift`` (the default): the test databridge receiver of ``tests/support/databridge.py`` (a real
  Thrift server, TLS login on one port, plain data on another) and the Stratos log stream. Raw: a Thrift
  client of the generated code logs in, defines the stream and sends the file's lines in bundles of 500
  events laid out as the Stratos agent laid them out, waiting for each ``publish`` reply.
- ``--sink fluentd``: the Forward protocol v1 receiver of ``tests/support/forward.py``, which stores each
  chunk and then acknowledges it. Raw (``ratio_fluentd_vs_raw``): fluent-logger's ``FluentSender`` emits
  each line as a Message with the same fields as pca's records (no acknowledgement: it only writes to the
  socket); its clock stops once the receiver has every line. A second raw client
  (``ratio_fluentd_vs_raw_packed``) packs the lines itself, 500 a PackedForward chunk, and waits for each
  chunk's acknowledgement: what pca's publisher sends, without tailing or buffering.
- pca: the agent's own pipeline with its defaults (``pca_core.agent.telemetry.Telemetry``: the
  ``LogTailer`` polling every ``logs.poll_interval`` and woken by its directory watch, the ``RecordSink``
  with batches of 500, and the publisher, on a core ``Scheduler``). The clock runs from the first line
  written (the lines are made before it) to the receiver having every line. Half-way the file is rotated
  (renamed to ``.1``, a new one created), as logrotate does.

Each rate is the best of ``--rounds`` rounds. The receiver forgets each round's lines once counted.

Then one durability round (``--durability-lines``, 0 skips it) runs the same pipeline in an agent process
of its own, with its position file, through everything at once: lines written, the file rotated, the
agent killed with SIGKILL mid-stream, lines written while it is down, a new agent started, the receiver
stopped mid-stream (its connections cut, unacknowledged chunks lost) and started again, a copytruncate
(copied aside, truncated, written again), and a clean stop. ``lost_lines`` counts lines written that the
receiver never got (goal 0), ``duplicate_lines`` those it got more than once (at least once allows them:
after the SIGKILL, the lines delivered since the position file was last written come again),
``errors`` what the receiver refused or could not decode. The CPU seconds of the sending process and of
the receiver's are those of the best round of each: both share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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
DURABILITY_TIMEOUT = 60.0
CLUSTER = "bench.domain"
LOG_ATTRIBUTES = ("tenantID", "serverName", "appName", "logTime", "priority", "message", "logger", "ip",
                  "instance", "stacktrace")


def arguments() -> argparse.Namespace:
    """The command line: ``--json``, ``--lines``, ``--rounds``, ``--sink``, ``--durability-lines``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--lines", type=int, default=200_000, help="lines per round (200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each; the best counts (3)")
    parser.add_argument("--sink", choices=("thrift", "fluentd"), default="thrift",
                        help="the receiver (thrift)")
    parser.add_argument("--durability-lines", type=int, default=60_000,
                        help="lines of the durability round (60,000; 0 skips it)")
    return parser.parse_args()


def lines(first: int, count: int) -> str:
    """``count`` log lines, numbered from ``first``."""
    return "".join(LINE.format(n=n) + "\n" for n in range(first, first + count))


# --- The receiver, in a process of its own ----------------------------------------------------------------


def _serve(conn: Any, root: str, tmp: str, sink: str) -> None:
    """The receiver's process: answers the benchmark's questions over ``conn`` until told to quit."""
    sys.path.insert(0, root)
    from tests.support.certs import TestCA

    ca = TestCA(Path(tmp) / "ca")
    if sink == "thrift":
        from tests.support.databridge import DatabridgeReceiver

        receiver: Any = DatabridgeReceiver(ca.issue("localhost"))
        info = {"ca_file": str(ca.ca_file), "host": receiver.host, "port": receiver.port,
                "secure_port": receiver.secure_port, "url": receiver.url}

        def total() -> int:
            return len(receiver.events)

        def wait_total(count: int) -> bool:
            return len(receiver.wait_for_events(count, TIMEOUT)) >= count

        def member_lines(events: list[Any], member: str) -> list[str]:
            return [e.payload["message"] for e in events
                    if e.stream_id.startswith("logs.") and e.meta["memberId"] == member]
    else:
        from tests.support.forward import ForwardReceiver

        receiver = ForwardReceiver()

        def total() -> int:
            return receiver.count

        def wait_total(count: int) -> bool:
            return receiver.wait_for_count(count, TIMEOUT)

        def member_lines(events: list[Any], member: str) -> list[str]:
            return [e.record["line"] for e in events if e.record.get("member_id") == member]

    def wait_distinct(argument: tuple[str, int]) -> int:
        """Waits until ``count`` distinct lines of ``member`` arrived (or the durability timeout)."""
        member, count = argument
        deadline = time.monotonic() + DURABILITY_TIMEOUT
        while (got := len(set(member_lines(receiver.events, member)))) < count:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)  # the benchmark's driver, not a test: it polls what arrived
        return got

    with receiver:
        if sink == "fluentd":
            info = {"host": receiver.host, "port": receiver.port, "url": receiver.url}
        conn.send(info)
        answers = {
            "total": lambda _: total(),
            "wait_total": wait_total,
            "wait_distinct": wait_distinct,
            "cpu": lambda _: time.process_time(),
            "errors": lambda _: list(receiver.errors),
            "take": lambda member: member_lines(receiver.take_events(), member),
            "stop": lambda _: receiver.stop(),
            "start": lambda _: receiver.start(),
        }
        while True:
            command, argument = conn.recv()
            if command == "quit":
                return
            conn.send(answers[command](argument))


class Receiver:
    """The receiver's process, the raw client loop for it, and the pca publisher's options that reach it."""

    def __init__(self, tmp: Path, sink: str) -> None:
        import multiprocessing

        self.sink = sink
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, str(ROOT), str(tmp), sink), daemon=True)
        self._process.start()
        self.info = self._conn.recv()
        if sink == "thrift":
            self.options = {"urls": [self.info["url"]], "username": "admin", "password": "admin",
                            "ca_file": self.info["ca_file"]}
        else:
            self.options = {"servers": [self.info["url"]]}

    def ask(self, command: str, argument: Any = None) -> Any:
        """What the receiver answers to ``command`` (see ``_serve``)."""
        self._conn.send((command, argument))
        return self._conn.recv()

    def close(self) -> None:
        """Stops the receiver's process."""
        self._conn.send(("quit", None))
        self._process.join(10)

    def raw_round(self, path: Path, member: str) -> float:
        """Sends every line of ``path`` with the sink's raw client; returns the seconds."""
        return (self._raw_thrift if self.sink == "thrift" else self._raw_fluentd)(path, member)

    def _raw_fluentd(self, path: Path, member: str) -> float:
        """fluent-logger's FluentSender, one Message per line; done once the receiver has them all."""
        from fluent.sender import FluentSender

        before = self.ask("total")
        started = time.perf_counter()
        sender = FluentSender("pca", host=self.info["host"], port=self.info["port"],
                              nanosecond_precision=True)
        failed = 0
        count = 0
        with path.open() as source:
            for text in source:
                count += 1
                failed += not sender.emit("logs", {"line": text.rstrip("\n"), "path": str(path),
                                                   "member_id": member, "cluster_id": CLUSTER})
        sender.close()
        if failed or not self.ask("wait_total", before + count):
            raise RuntimeError(f"the raw sender lost lines ({failed} emits failed)")
        return time.perf_counter() - started

    def raw_packed_round(self, path: Path, member: str) -> float:
        """PackedForward chunks of 500 lines packed with msgpack, each acknowledged before the next."""
        import base64

        import msgpack
        from fluent.sender import EventTime

        packer, answers = msgpack.Packer(), msgpack.Unpacker()

        def send(batch: list[str]) -> None:
            now = EventTime(time.time())
            entries = b"".join(packer.pack([now, {"line": text, "path": name, "member_id": member,
                                                  "cluster_id": CLUSTER}]) for text in batch)
            chunk = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(packer.pack(["pca.logs", entries, {"chunk": chunk, "size": len(batch)}]))
            while True:
                answers.feed(sock.recv(4096))
                if any(answer.get("ack") == chunk for answer in answers):
                    return

        name = str(path)
        started = time.perf_counter()
        with socket.create_connection((self.info["host"], self.info["port"])) as sock, path.open() as source:
            batch: list[str] = []
            for text in source:
                batch.append(text.rstrip("\n"))
                if len(batch) == BATCH:
                    send(batch)
                    batch = []
            if batch:
                send(batch)
        return time.perf_counter() - started

    def _raw_thrift(self, path: Path, member: str) -> float:
        """A Thrift client of the generated code, bundle by bundle, each ``publish`` answered."""
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
                strings += (stream_id, member, "0", CLUSTER, "", day, "", text, "", "", member, "")
            now = int(time.time() * 1000)
            plain.publish(ThriftEventBundle(sessionId=session, eventNum=len(batch), intAttributeList=[],
                                            longAttributeList=[now] * len(batch), doubleAttributeList=[],
                                            boolAttributeList=[], stringAttributeList=strings))

        info = self.info
        started = time.perf_counter()
        context = ssl.create_default_context(cafile=info["ca_file"])
        secure, secure_transport = client(context.wrap_socket(socket.create_connection(
            (info["host"], info["secure_port"])), server_hostname="localhost"), Secure)
        session = secure.connect("admin", "admin")
        plain, plain_transport = client(socket.create_connection((info["host"], info["port"])), Plain)
        day = time.strftime("%Y.%m.%d")
        attributes = ",".join(f'{{"name":"{a}", "type": "STRING"}}' for a in LOG_ATTRIBUTES)
        stream_id = plain.defineStream(session, f'{{"name":"logs.0.{CLUSTER}.{day}","version":"1.0.0",'
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


# --- pca's pipeline ---------------------------------------------------------------------------------------


class Pipeline:
    """The agent's log shipping as the agent wires it: its ``Telemetry`` with one publisher of ``logs``.

    Args:
        plugin: the publisher's entry point name.
        options: its options.
        path: the log file to tail.
        state_dir: where the position file is kept.
        member: the member id every record carries.
    """

    def __init__(self, plugin: str, options: dict[str, Any], path: Path, state_dir: Path,
                 member: str) -> None:
        from pca_core.agent.telemetry import Telemetry
        from pca_core.api import PublisherConfig
        from pca_core.config.schema import AgentConfig, Config, LogsConfig
        from pca_core.runtime.discovery import LOG_PUBLISHERS, load_plugin
        from pca_core.runtime.scheduler import Scheduler
        from pca_core.stratos.payload import Identity
        from pca_core.testing import build_plugin

        identity = Identity(application_id="bench", service_name="bench", cluster_id=CLUSTER,
                            tenant_id="-1234", multitenant=False, ports=(), member_id=member)
        config = Config(agent=AgentConfig(state_dir=str(state_dir)),
                        logs=LogsConfig(enabled=True, paths=(str(path),)))
        publisher = build_plugin(load_plugin(LOG_PUBLISHERS, plugin),
                                 PublisherConfig(plugin=plugin, streams=("logs",), options=options),
                                 key="publishers[0]")
        self.positions = state_dir / "log-positions.json"
        self.scheduler = Scheduler()
        self.scheduler.start()
        self.telemetry = Telemetry(config, identity, [publisher], self.scheduler)
        self.telemetry.sink.start()

    def start(self) -> None:
        """Starts tailing; returns once the first poll followed the file (it wrote the position file)."""
        before = self.positions.stat().st_mtime_ns if self.positions.exists() else None
        self.telemetry.start_logs()
        deadline = time.monotonic() + 30
        while (not self.positions.exists() or self.positions.stat().st_mtime_ns == before) \
                and time.monotonic() < deadline:
            time.sleep(0.005)  # the benchmark's driver: the first poll writes the file

    def close(self) -> None:
        """Stops as the agent does: the tailer, then the sink's last deliveries, then the scheduler."""
        self.telemetry.close_logs()
        self.telemetry.sink.close(10)
        self.scheduler.shutdown(10)


def pca_round(receiver: Receiver, tmp: Path, count: int, member: str) -> float:
    """Appends ``count`` lines to a tailed file (rotated half-way); returns the seconds until all arrived."""
    path = tmp / f"{member}.log"
    path.write_text("")
    state = tmp / f"{member}-state"
    state.mkdir()
    pipeline = Pipeline(receiver.sink, receiver.options, path, state, member)
    pipeline.start()  # the file is followed from here on, so the rotation below is followed too
    try:
        half = count // 2
        first, second = lines(0, half), lines(half, count - half)  # made before the clock: the app's work
        before = receiver.ask("total")
        started = time.perf_counter()
        with path.open("a") as log:
            log.write(first)
        path.rename(path.with_name(path.name + ".1"))
        with path.open("a") as log:
            log.write(second)
        if not receiver.ask("wait_total", before + count):
            raise RuntimeError(f"gave up waiting for {count} lines at the receiver")
        return time.perf_counter() - started
    finally:
        pipeline.close()


# --- The durability round ---------------------------------------------------------------------------------


def _agent(conn: Any, root: str, plugin: str, options: dict[str, Any], path: str, state: str,
           member: str) -> None:
    """An agent process: the pipeline, until told to stop (or killed)."""
    sys.path.insert(0, root)
    pipeline = Pipeline(plugin, options, Path(path), Path(state), member)
    pipeline.start()
    conn.send("ready")
    conn.recv()
    pipeline.close()
    conn.send("stopped")


class Agent:
    """An agent process tailing ``path`` for ``receiver``, with its position file in ``state``."""

    def __init__(self, receiver: Receiver, path: Path, state: Path, member: str) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_agent, daemon=True, args=(
            child, str(ROOT), receiver.sink, receiver.options, str(path), str(state), member))
        self._process.start()
        if self._conn.recv() != "ready":
            raise RuntimeError("the agent process did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save of the positions."""
        os.kill(self._process.pid, signal.SIGKILL)
        self._process.join(10)

    def stop(self) -> None:
        """A clean stop, as on SIGTERM."""
        self._conn.send("stop")
        self._conn.recv()
        self._process.join(10)


def durability_round(receiver: Receiver, tmp: Path, count: int) -> dict[str, int]:
    """Ships ``count`` lines through rotation, SIGKILL, a receiver restart and copytruncate.

    Returns:
        ``lost_lines`` and ``duplicate_lines``.
    """
    member = f"durable-{uuid.uuid4().hex[:8]}"
    path, state = tmp / f"{member}.log", tmp / f"{member}-state"
    path.write_text("")
    state.mkdir()
    # Five segments; the last is smaller than what the file holds before the copytruncate, so the file
    # is shorter than the tailer's offset when it next looks, whatever the timing (see docs/runtime.md).
    cuts = [0, count * 25 // 100, count * 50 // 100, count * 60 // 100, count * 85 // 100, count]
    segment = [lines(cuts[i], cuts[i + 1] - cuts[i]) for i in range(5)]

    def write(text: str) -> None:
        with path.open("a") as log:
            log.write(text)

    agent = Agent(receiver, path, state, member)
    write(segment[0])
    path.rename(path.with_name(path.name + ".1"))
    write(segment[1])
    receiver.ask("wait_distinct", (member, cuts[1] + (cuts[2] - cuts[1]) // 2))
    agent.kill()  # mid-stream
    write(segment[2])  # while no agent runs
    agent = Agent(receiver, path, state, member)
    receiver.ask("wait_distinct", (member, cuts[2] + (cuts[3] - cuts[2]) // 2))
    receiver.ask("stop")  # mid-stream: connections cut, what was not acknowledged is gone
    write(segment[3])
    receiver.ask("start")
    receiver.ask("wait_distinct", (member, cuts[4]))
    shutil.copy(path, path.with_name(path.name + ".2"))  # copytruncate, once the agent caught up
    with path.open("r+") as log:
        log.truncate(0)
    write(segment[4])
    receiver.ask("wait_distinct", (member, count))
    agent.stop()
    got = receiver.ask("take", member)
    expected = {LINE.format(n=n) for n in range(count)}
    return {"lost_lines": len(expected - set(got)), "duplicate_lines": len(got) - len(set(got))}


# --- Main -------------------------------------------------------------------------------------------------


def _timed(receiver: Receiver, run: Any) -> tuple[float, float, float]:
    """Runs ``run()``; returns its seconds, this process's CPU seconds and the receiver's."""
    cpu, receiver_cpu = time.process_time(), receiver.ask("cpu")
    seconds = run()
    return seconds, time.process_time() - cpu, receiver.ask("cpu") - receiver_cpu


def _packed_figures(packed: list[tuple[float, float, float]], count: int, pca_rate: float) -> dict[str, Any]:
    """The figures of the raw PackedForward client, when it ran."""
    if not packed:
        return {}
    best = min(packed)
    return {"raw_packed_lines_per_s": round(count / best[0]),
            "ratio_fluentd_vs_raw_packed": round(pca_rate * best[0] / count, 3),
            "raw_packed_cpu_s": round(best[1], 2), "raw_packed_receiver_cpu_s": round(best[2], 2)}


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments()
    sys.path.insert(0, str(ROOT))  # the test-owned receivers of tests/support
    expected = {LINE.format(n=n) for n in range(args.lines)}
    raw: list[tuple[float, float, float]] = []
    packed: list[tuple[float, float, float]] = []  # fluentd only: a raw client with acks, as pca sends
    pca: list[tuple[float, float, float]] = []
    lost = duplicates = 0
    durability: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="pca-bench-logs-") as directory:
        tmp = Path(directory)
        receiver = Receiver(tmp, args.sink)
        try:
            for _ in range(args.rounds):
                path = tmp / f"raw-{uuid.uuid4().hex[:8]}.log"
                path.write_text(lines(0, args.lines))
                member = f"raw-{uuid.uuid4().hex[:8]}"
                raw.append(_timed(receiver, lambda: receiver.raw_round(path, member)))  # noqa: B023
                receiver.ask("take", member)  # forgotten: each round starts with an empty receiver
                if args.sink == "fluentd":
                    packed.append(_timed(receiver, lambda: receiver.raw_packed_round(path, member)))  # noqa: B023
                    receiver.ask("take", member)
                member = f"pca-{uuid.uuid4().hex[:8]}"
                pca.append(_timed(receiver, lambda: pca_round(receiver, tmp, args.lines, member)))  # noqa: B023
                got = receiver.ask("take", member)
                lost += len(expected - set(got))
                duplicates += len(got) - len(set(got))
            if args.durability_lines:
                durability = durability_round(receiver, tmp, args.durability_lines)
            errors = len(receiver.ask("errors"))
        finally:
            receiver.close()
    best_raw, best_pca = min(raw), min(pca)
    raw_rate, pca_rate = args.lines / best_raw[0], args.lines / best_pca[0]
    ratio = f"ratio_{args.sink}_vs_raw"
    figures: dict[str, Any] = {
        "sink": args.sink, "lines": args.lines, "rounds": args.rounds,
        "line_bytes": len(LINE.format(n=0)) + 1,
        "raw_lines_per_s": round(raw_rate), "pca_lines_per_s": round(pca_rate),
        ratio: round(pca_rate / raw_rate, 3),
        "lost_lines": lost + durability.get("lost_lines", 0),
        "duplicate_lines": duplicates + durability.get("duplicate_lines", 0),
        "throughput_lost_lines": lost, "throughput_duplicate_lines": duplicates,
        "durability_lines": args.durability_lines,
        "durability_lost_lines": durability.get("lost_lines"),
        "durability_duplicate_lines": durability.get("duplicate_lines"),
        "errors": errors,
        **_packed_figures(packed, args.lines, pca_rate),
        "raw_cpu_s": round(best_raw[1], 2), "raw_receiver_cpu_s": round(best_raw[2], 2),
        "pca_cpu_s": round(best_pca[1], 2), "pca_receiver_cpu_s": round(best_pca[2], 2)}
    if args.json:
        print(json.dumps(figures))
        return 0
    raw_client = "FluentSender, a Message per line" if args.sink == "fluentd" else "Thrift client, bundles"
    print(f"{args.lines:,} lines of {figures['line_bytes']} bytes to a {args.sink} receiver, "
          f"best of {args.rounds} (CPU seconds: sender / receiver)")
    print(f"  raw: {raw_client:<34} {figures['raw_lines_per_s']:>9,} lines/s   "
          f"{figures['raw_cpu_s']} / {figures['raw_receiver_cpu_s']}")
    if packed:
        print(f"  raw: PackedForward chunks, acked {'':<9} {figures['raw_packed_lines_per_s']:>9,} lines/s   "
              f"{figures['raw_packed_cpu_s']} / {figures['raw_packed_receiver_cpu_s']}")
    print(f"  pca: tailer, sink, publisher {'':<11} {figures['pca_lines_per_s']:>9,} lines/s   "
          f"{figures['pca_cpu_s']} / {figures['pca_receiver_cpu_s']}   {figures[ratio]}x raw (goal >= 0.7)")
    print(f"  throughput rounds (with a rotation): lost {lost}, duplicated {duplicates}")
    if durability:
        print(f"  durability, {args.durability_lines:,} lines through rotate, SIGKILL, receiver restart and "
              f"copytruncate: lost {durability['lost_lines']}, duplicated {durability['duplicate_lines']}")
    print(f"  receiver errors {errors} (goal: 0 lost, 0 errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
