"""TCP relays on 127.0.0.1 that stand in front of a server for what it cannot do itself.

:class:`Relay` accepts, greets each client (the subclass's step) and then copies bytes both ways to the
upstream port. :class:`TlsProxy` terminates TLS (Tansu 0.6 cannot: see tests/support/tansu.py); the Kafka
SASL PLAIN layer is in tests/support/kafka_sasl.py. Threads, not asyncio: an accept thread, and two
copying threads per client connection.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from tests.support.certs import CertPair

HANDSHAKE_TIMEOUT = 10.0
CHUNK = 65536


class Relay:
    """Accepts on ``127.0.0.1:port`` and relays each connection to ``upstream_port`` after :meth:`_greet`.

    Args:
        port: the port to listen on (the same one after a :meth:`stop` and :meth:`start`).
        upstream_port: the plain TCP port on 127.0.0.1 every client connection is relayed to.

    Attributes:
        greeting_errors: why greetings failed (a refused TLS handshake, say), oldest first, as
            ``"ExceptionType: message"``.
    """

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.greeting_errors: list[str] = []
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the relay is listening."""
        return self._listener is not None

    def start(self) -> None:
        """Listens on ``port`` and returns once it accepts connections; does nothing if it already does."""
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        """Closes the listener and every relayed connection (both ends), and waits for its threads."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        close(listener)
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            close(sock)
        for thread in self._threads:
            thread.join(HANDSHAKE_TIMEOUT)
        self._threads = []

    def _greet(self, client: socket.socket, upstream: socket.socket) -> socket.socket | None:
        """What happens before the bytes flow; returns the client's side to relay, or None to hang up.

        Runs with a timeout of HANDSHAKE_TIMEOUT on ``client``; the base class greets no one.
        """
        return client

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"relay-{self.port}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._listener is None:
                return False
            self._sockets.add(sock)
            return True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            if not self._track(client):
                close(client)
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            close(client)
            return
        if not self._track(upstream):
            close(client)
            close(upstream)
            return
        client.settimeout(HANDSHAKE_TIMEOUT)
        try:
            side = self._greet(client, upstream)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.greeting_errors.append(f"{type(exc).__name__}: {exc}")
            side = None
        if side is None or not self._track(side):
            close(client)
            close(upstream)
            return
        side.settimeout(None)
        self._spawn(_pump, upstream, side)
        _pump(side, upstream)

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TlsProxy(Relay):
    """Accepts TLS with ``cert`` and relays the plain bytes: clients that speak plain TCP are refused."""

    def __init__(self, port: int, upstream_port: int, cert: CertPair) -> None:
        super().__init__(port, upstream_port)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)

    def _greet(self, client: socket.socket, upstream: socket.socket) -> socket.socket | None:
        return self._context.wrap_socket(client, server_side=True)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copies ``source`` to ``sink`` until either ends, then closes both (so the other pump ends too)."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        close(source)
        close(sink)


def close(sock: socket.socket) -> None:
    """Shuts ``sock`` down and closes it, whatever state it is in."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
