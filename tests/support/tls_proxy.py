"""A TLS-terminating TCP proxy on 127.0.0.1: clients speak TLS to it, it speaks plain TCP to an upstream.

It stands in front of a server that cannot do TLS itself (Tansu 0.6: see tests/support/tansu.py). Threads,
not asyncio: an accept thread, and two copying threads per client connection.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from tests.support.certs import CertPair

HANDSHAKE_TIMEOUT = 10.0
CHUNK = 65536


class TlsProxy:
    """Accepts TLS on ``127.0.0.1:port`` with ``cert`` and relays each connection to ``upstream_port``.

    Args:
        port: the port to listen on (the same one after a :meth:`stop` and :meth:`start`).
        upstream_port: the plain TCP port on 127.0.0.1 every client connection is relayed to.
        cert: the server certificate and key the proxy presents.

    Attributes:
        handshake_errors: why failed TLS handshakes failed (e.g. a client that spoke plain Kafka), oldest
            first, as ``"ExceptionType: message"``.
    """

    def __init__(self, port: int, upstream_port: int, cert: CertPair) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self.handshake_errors: list[str] = []
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the proxy is listening."""
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
        _close(listener)
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(HANDSHAKE_TIMEOUT)
        self._threads = []

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"tls-proxy-{self.port}")
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
                _close(client)
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(HANDSHAKE_TIMEOUT)
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.handshake_errors.append(f"{type(exc).__name__}: {exc}")
            _close(client)
            return
        secure.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            _close(secure)
            return
        if not (self._track(secure) and self._track(upstream)):
            _close(secure)
            _close(upstream)
            return
        self._spawn(_pump, upstream, secure)
        _pump(secure, upstream)

    def __enter__(self) -> TlsProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copies ``source`` to ``sink`` until either ends, then closes both (so the other pump ends too)."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
