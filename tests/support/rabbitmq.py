"""A RabbitMQ node owned by a test: its own directory, epmd and ports on 127.0.0.1, stopped by PID.

The node runs the Debian install's ``/usr/lib/rabbitmq/bin/rabbitmq-server`` in the foreground as the
current user, with an environment that points everything (home and Erlang cookie, database, logs, config,
plugins, the ``rabbitmq-env.conf`` it sources) into its directory, so the system node is never touched.
It registers with an epmd of its own (on a free port, stopped with the node), not the system's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pca_core.testing.broker import Broker
from tests.support.certs import CertPair
from tests.support.ports import accepts, free_port
from tests.support.waiting import wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
BOOT_TIMEOUT = 90.0
"""How long a node may take from launch to a finished boot (two cores, CI load)."""
APP_TIMEOUT = 30.0
"""How long ``start_app`` / ``stop_app`` and the port that follows them may take."""
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LOG_TAIL = 80
"""Lines of the node's log shown in an error."""


# What ``rabbitmqctl stop_app`` does (rabbit:stop()), after killing the client connections of every
# listener: an AMQP 1.0 connection that the stopping application closes keeps the stop waiting 3 s more
# (RabbitMQ 3.10's 1.0 reader delays the close of a connection it was forced to close).
_STOP_APP = ("[exit(Conn, kill) || Ref <- maps:keys(ranch:info()), Conn <- ranch:procs(Ref, connections)], "
             "rabbit:stop().")


def rabbitmq_scripts() -> Path:
    """The Debian install's script directory; fails the test (never skips it) when it is missing."""
    if (RABBITMQ_BIN / "rabbitmq-server").is_file() and (RABBITMQ_BIN / "rabbitmqctl").is_file():
        return RABBITMQ_BIN
    raise RuntimeError("RabbitMQ is not installed (Debian: apt-get install rabbitmq-server); the AMQP tests "
                       "need it, and scripts/system-packages should have installed it")


def epmd_binary() -> str:
    """The path of Erlang's ``epmd`` (Debian package erlang-base, which rabbitmq-server depends on)."""
    candidates = [shutil.which("epmd"), *sorted(map(str, Path("/usr/lib/erlang").glob("erts-*/bin/epmd")))]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("epmd is not installed (Debian: apt-get install erlang-base, a dependency of "
                       "rabbitmq-server)")


class RabbitMQ(Broker):
    """A RabbitMQ node with the AMQP 1.0 plugin, booted by the first :meth:`start`.

    After the boot, :meth:`stop` and :meth:`start` stop and start the RabbitMQ application only, not the
    node: the listeners close, every client connection drops (without a close frame) and the queues of
    those connections go away; then ``start_app`` opens the same ports again. Each takes about a second
    instead of a new boot. :meth:`shutdown` stops the node for good.

    Args:
        directory: where the node's files go (default: a new temporary directory).
        tls: the server certificate and key; then the AMQP listener is TLS only (``url`` is ``amqps://``).
        ca_file: the CA that signed ``tls``; required with ``tls``.
        amqp1: enable ``rabbitmq_amqp1_0``; False gives a node that speaks AMQP 0-9-1 only.
        mqtt: also enable ``rabbitmq_mqtt``, listening on ``mqtt_port``.
        host: the host in ``url`` and ``dead_url`` (the node listens on 127.0.0.1 whatever it is). With
            TLS, ``localhost`` lets proton check the certificate's name: it matches the host against DNS
            names only, so ``127.0.0.1`` fails against a certificate for the IP address 127.0.0.1.

    Attributes:
        port: the AMQP listener's port (TLS with ``tls``).
        url: ``amqp://HOST:PORT`` (``amqps`` with ``tls``), without credentials: the 1.0 plugin maps
            SASL ANONYMOUS to its default user, guest.
        dead_url: the same scheme on a free port nobody listens on.
        mqtt_port: the MQTT listener's port with ``mqtt``, else None.
        nodename: the Erlang node name, unique per process and instance.
    """

    _numbers = itertools.count(1)

    def __init__(self, directory: Path | None = None, *, tls: CertPair | None = None,
                 ca_file: Path | None = None, amqp1: bool = True, mqtt: bool = False,
                 host: str = "127.0.0.1") -> None:
        if tls is not None and ca_file is None:
            raise ValueError("a TLS node needs the ca_file that signed its certificate")
        self._scripts = rabbitmq_scripts()
        self._epmd_binary = epmd_binary()
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="pca-rabbitmq-"))
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.ca_file = str(ca_file) if tls is not None else None
        self.amqp1 = amqp1
        self.port = free_port()
        scheme = "amqps" if tls else "amqp"
        self.url = f"{scheme}://{host}:{self.port}"
        self.dead_url = f"{scheme}://{host}:{free_port()}"
        self.mqtt_port = free_port() if mqtt else None
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"pca-test-{os.getpid()}-{next(self._numbers)}@localhost"
        self.log_dir = directory / "log"
        self.output_file = directory / "rabbitmq.out"
        self._env = self._environment()
        self._proc: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._app_running = False

    @property
    def plugins(self) -> list[str]:
        """The plugins the node runs."""
        return [name for name, wanted in (("rabbitmq_amqp1_0", self.amqp1),
                                          ("rabbitmq_mqtt", self.mqtt_port is not None)) if wanted]

    def _environment(self) -> dict[str, str]:
        d = self.directory
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(d / "home"),
            "LC_ALL": "C.UTF-8",  # whatever the caller's: Erlang's file name encoding follows the locale
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            # The Erlang distribution listens on loopback only, the node's and each rabbitmqctl's.
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # rabbitmqctl's own distribution port: any free one (the default range is shared, 35672-35682).
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
        })
        if self.plugins:
            env["RABBITMQ_ENABLED_PLUGINS"] = ",".join(self.plugins)
        return env

    def _write_files(self) -> None:
        d = self.directory
        (d / "home").mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        (d / "rabbitmq-env.conf").write_text("# empty: everything is in the environment\n")
        (d / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        lines = ["disk_free_limit.absolute = 1MB"]  # a full /tmp must not block publishers mid-test
        if self.tls is None:
            lines.append(f"listeners.tcp.1 = 127.0.0.1:{self.port}")
        else:
            lines += ["listeners.tcp = none", f"listeners.ssl.1 = 127.0.0.1:{self.port}",
                      f"ssl_options.cacertfile = {self.ca_file}",
                      f"ssl_options.certfile = {self.tls.cert_file}",
                      f"ssl_options.keyfile = {self.tls.key_file}",
                      "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false"]
        if self.mqtt_port is not None:
            lines += [f"mqtt.listeners.tcp.1 = 127.0.0.1:{self.mqtt_port}", "mqtt.listeners.ssl = none"]
        (d / "rabbitmq.conf").write_text("\n".join(lines) + "\n")

    def ctl(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Runs ``rabbitmqctl -q ARGS`` against this node; the result, whatever its exit code."""
        return subprocess.run([str(self._scripts / "rabbitmqctl"), "-q", *args], env=self._env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def _ctl_ok(self, *args: str, shown: str | None = None, timeout: float = CLI_TIMEOUT) -> None:
        # ``shown`` replaces the arguments in the error (they may hold a password).
        result = self.ctl(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {shown or ' '.join(args)} failed ({result.returncode}) on "
                               f"{self.nodename}: {(result.stdout + result.stderr).strip()}\n{self._tail()}")

    @property
    def running(self) -> bool:
        """Whether the node's process is alive (its RabbitMQ application may be stopped)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Boots the node, or starts its stopped application; returns once the AMQP port accepts."""
        if self._proc is None:
            self._boot()
            return
        if not self.running:
            raise RuntimeError(f"RabbitMQ node {self.nodename} is shut down or exited (code "
                               f"{self._proc.returncode}); it cannot start again:\n{self._tail()}")
        if self._app_running:
            return
        self._ctl_ok("start_app", timeout=APP_TIMEOUT)
        self._app_running = True
        self._wait_ports(listening=True)

    def stop(self) -> None:
        """Drops every connection and stops the node's application; returns once the ports refuse."""
        if not self._app_running or not self.running:
            return
        self._ctl_ok("eval", _STOP_APP, shown="eval <kill the client connections, then stop_app>",
                     timeout=APP_TIMEOUT)
        self._app_running = False
        self._wait_ports(listening=False)

    def _ports(self) -> list[int]:
        return [self.port] + ([self.mqtt_port] if self.mqtt_port is not None else [])

    def _wait_ports(self, *, listening: bool) -> None:
        if not wait_until(lambda: all(accepts(p) == listening for p in self._ports()), APP_TIMEOUT, 0.01):
            state = "accept" if listening else "refuse"
            raise RuntimeError(f"the ports {self._ports()} of {self.nodename} did not {state} connections "
                               f"within {APP_TIMEOUT} s:\n{self._tail()}")

    def _boot(self) -> None:
        self._write_files()
        self._epmd = subprocess.Popen([self._epmd_binary, "-port", str(self.epmd_port), "-address",
                                       "127.0.0.1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        with self.output_file.open("ab") as out:
            self._proc = subprocess.Popen([str(self._scripts / "rabbitmq-server")], env=self._env,
                                          cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._await_boot()
        except BaseException:
            self.shutdown()
            raise
        self._app_running = True

    def _await_boot(self) -> None:
        # rabbitmqctl await_startup fails at once while the node is not registered yet, so it is
        # retried; the listener opens late in the boot, so waiting for it first saves most attempts.
        last: list[str] = []
        deadline = time.monotonic() + BOOT_TIMEOUT

        def booted() -> bool:
            if not self.running:
                return True
            if not accepts(self.port):
                return False
            left = max(1, int(deadline - time.monotonic()))
            result = self.ctl("await_startup", "--timeout", str(left), timeout=left + CLI_TIMEOUT)
            last[:] = [(result.stdout + result.stderr).strip()]
            return result.returncode == 0

        if not wait_until(booted, BOOT_TIMEOUT, 0.05):
            raise RuntimeError(f"RabbitMQ node {self.nodename} did not boot within {BOOT_TIMEOUT} s "
                               f"({''.join(last) or 'its port never accepted'}):\n{self._tail()}")
        if not self.running:
            assert self._proc is not None
            raise RuntimeError(f"RabbitMQ node {self.nodename} exited with {self._proc.returncode} while "
                               f"booting:\n{self._tail()}")
        self._wait_ports(listening=True)

    def shutdown(self) -> None:
        """Stops the node for good (``rabbitmqctl stop``, then signals to its process group) and its epmd."""
        proc, self._proc = self._proc, None
        self._app_running = False
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.ctl("stop", timeout=STOP_TIMEOUT)
                _end(proc, grace=STOP_TIMEOUT, group=True)
            # Keep ``start`` from booting it again: the node is gone, not stopped.
            self._proc = proc
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            _end(epmd, grace=0, group=False)

    def add_user(self, name: str, password: str) -> None:
        """Adds a user with every permission on the virtual host ``/`` (for SASL PLAIN)."""
        self._ctl_ok("add_user", name, password, shown=f"add_user {name} <password>")
        self._ctl_ok("set_permissions", "-p", "/", name, ".*", ".*", ".*")

    def log(self) -> str:
        """The node's log so far, then what its start script and Erlang printed themselves."""
        paths = sorted(self.log_dir.glob("*.log")) if self.log_dir.exists() else []
        return "".join(p.read_text(errors="replace") for p in [*paths, self.output_file] if p.exists())

    def _tail(self) -> str:
        return "\n".join(self.log().splitlines()[-LOG_TAIL:])

    def __enter__(self) -> RabbitMQ:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _end(proc: subprocess.Popen[bytes], *, grace: float, group: bool) -> None:
    """Gives ``proc`` ``grace`` seconds to exit, then sends SIGTERM and at last SIGKILL.

    With ``group``, the signals go to its process group (its own, by ``start_new_session``): for the node,
    the start script and the ``beam.smp`` it runs.
    """
    for sig, wait in ((None, grace), (signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        if sig is not None:
            try:
                if group:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
