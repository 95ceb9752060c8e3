"""Test-owned Redis servers: each test gets its own redis-server child process on a free loopback port."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pca_redis import RedisTransport

from pca_core import TlsConfig, TransportConfig
from pca_core.testing import Broker, build_plugin

REDIS_SERVER = os.environ.get("PCA_REDIS_SERVER", "/usr/bin/redis-server")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer(Broker):
    """A redis-server child process on 127.0.0.1, with no persistence, that a test can stop and restart.

    Args:
        workdir: its working directory (and where its log goes).
        tls: (ca_file, cert_file, key_file) to serve ``rediss://`` only, or None for plain TCP.
        extra_args: more redis-server arguments, e.g. ``["--requirepass", "secret"]``.
    """

    def __init__(self, workdir: Path, *, tls: tuple[Path, Path, Path] | None = None,
                 extra_args: list[str] | tuple[str, ...] = ()) -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.fail(f"{REDIS_SERVER} is missing: these tests need a real Redis server "
                        "(Debian: apt-get install redis-server; or set PCA_REDIS_SERVER)", pytrace=False)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.extra_args = list(extra_args)
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.dead_url = f"{scheme}://127.0.0.1:{free_port()}"
        self.ca_file = str(tls[0]) if tls else None
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts redis-server and returns once it answers PING."""
        if self.process is not None:
            return
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--daemonize", "no"]
        if self.tls:
            ca, cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*args, *self.extra_args], cwd=self.workdir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            # Waiting on the process doubles as the pause between two tries, and notices an early exit.
            try:
                code = self.process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None or time.monotonic() > deadline:
                self.stop()
                reason = f"exited with {code}" if code is not None else f"did not answer in {START_TIMEOUT} s"
                pytest.fail(f"redis-server on port {self.port} {reason}; its log:\n{self.log.read_text()}",
                            pytrace=False)

    def stop(self) -> None:
        """Stops redis-server by its PID and waits until it has exited; idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def _answers(self) -> bool:
        """Whether the server answers a PING (with PONG, or NOAUTH when it wants a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as raw:
                sock: socket.socket = raw
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.tls[0]))
                    sock = context.wrap_socket(raw, server_hostname="localhost")
                sock.sendall(b"PING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False


def _make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for localhost and 127.0.0.1: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pca-redis test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(valid[0]).not_valid_after(valid[1])
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    files = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    files[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The CA, certificate and key of the TLS test servers."""
    return _make_tls_files(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture
def redis_server_factory(tmp_path: Path):
    """Starts RedisServer instances for one test and stops them all afterwards."""
    servers: list[RedisServer] = []

    def start(name: str = "redis", **kwargs: object) -> RedisServer:
        server = RedisServer(tmp_path / f"{name}-{len(servers)}", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def broker(redis_server_factory) -> RedisServer:
    """A plain redis-server of this test's own."""
    return redis_server_factory("plain")


@pytest.fixture
def tls_broker(redis_server_factory, tls_files) -> RedisServer:
    """A redis-server of this test's own that serves TLS only, with a certificate from ``ca_file``."""
    return redis_server_factory("tls", tls=tls_files)


FAST_RECONNECT = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.5}
"""Fast reconnects, so that tests that restart the broker do not wait for the default backoff."""


@pytest.fixture
def make_transport():
    """Makes RedisTransport instances on the given URLs (config fields as keywords), closed after the test."""
    made: list[RedisTransport] = []

    def make(*urls: str, options: dict[str, object] | None = None, **config: object) -> RedisTransport:
        settings = {"connect_timeout": 5.0, "publish_timeout": 5.0, **FAST_RECONNECT, **config}
        config = _transport_config(urls, settings, options or {})
        transport = build_plugin(RedisTransport, config, key="transport")
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(5.0)


def _transport_config(urls: tuple[str, ...], settings: dict[str, object],
                      options: dict[str, object]) -> TransportConfig:
    tls = settings.pop("tls", None)
    if isinstance(tls, dict):
        tls = TlsConfig(**tls)
    return TransportConfig(plugin="redis", urls=urls, tls=tls, options=options,  # type: ignore[arg-type]
                           **settings)
