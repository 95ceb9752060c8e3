"""A Mosquitto broker owned by a test: its own config, a free port on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pca_core.testing.broker import Broker
from tests.support.certs import CertPair
from tests.support.children import ChildServer
from tests.support.ports import accepts, free_port

START_TIMEOUT = 10.0


def mosquitto_binary() -> str:
    """The path of ``mosquitto``; fails the test (never skips it) when it is not installed."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto); the MQTT tests need "
                       "it, and scripts/bootstrap should have installed it")


def password_line(user: str, password: str) -> str:
    """One line of a Mosquitto password file (the salted SHA-512 ``$6$`` form Mosquitto 2 accepts)."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class Mosquitto(ChildServer, Broker):
    """A ``mosquitto -c CONF`` child process on a free port.

    Args:
        directory: where the config, password file and log go (default: a new temporary directory).
        port: the port to listen on (default: a free one).
        tls: the server certificate and key for a TLS listener (then ``url`` is ``mqtts://``).
        ca_file: the CA that signed ``tls``; required with ``tls``.
        require_client_cert: with ``tls``, refuse clients without a certificate signed by ``ca_file``.
        users: user name -> password; when given, anonymous clients are refused.
        extra: further config lines (e.g. ``max_queued_messages 0``).

    Attributes:
        port: the listener's port.
        log_file: Mosquitto's log (connections, disconnections, errors).
        output_file: what the process printed (start-up errors).
    """

    def __init__(self, directory: Path | None = None, *, port: int | None = None, tls: CertPair | None = None,
                 ca_file: Path | None = None, require_client_cert: bool = False,
                 users: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> None:
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="pca-mosquitto-"))
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        scheme = "mqtts" if tls else "mqtt"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.dead_url = f"{scheme}://127.0.0.1:{free_port()}"
        self.ca_file = str(ca_file) if tls and ca_file else None
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.users = users
        self.extra = extra
        self.config_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.output_file = directory / "mosquitto.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._binary = mosquitto_binary()

    @property
    def address(self) -> str:
        """The legacy ``host:port`` form of the listener, as in ``mb.urls``."""
        return f"127.0.0.1:{self.port}"

    def set_users(self, users: dict[str, str] | None) -> None:
        """Replaces the accepted users (None: anonymous); takes effect at the next :meth:`start`."""
        self.users = users

    def _write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"log_dest file {self.log_file}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it switches to user mosquitto and cannot read root's files
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.directory / "passwords"
            passwords.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if self.tls is not None:
            lines += [f"certfile {self.tls.cert_file}", f"keyfile {self.tls.key_file}"]
            if self.ca_file:
                lines.append(f"cafile {self.ca_file}")
            if self.require_client_cert:
                lines.append("require_certificate true")
        lines += list(self.extra)
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Starts Mosquitto and returns once its port accepts connections."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._write_config()
        with self.output_file.open("ab") as log:
            self._proc = subprocess.Popen([self._binary, "-c", str(self.config_file)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode} at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT} s:\n"
                                   f"{self.log()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stops Mosquitto (SIGTERM, then SIGKILL) and waits for it to exit; idempotent."""
        self._end()

    def log(self) -> str:
        """Everything Mosquitto logged so far (all runs), then what it printed itself."""
        return "".join(path.read_text(errors="replace") for path in (self.log_file, self.output_file)
                       if path.exists())

    def connect_attempts(self) -> int:
        """How many MQTT CONNECTs Mosquitto has answered so far (all runs), accepted or refused."""
        text = self.log()
        return text.count("New client connected") + text.count("not authorised")

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
