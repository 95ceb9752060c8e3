"""The operator's HTTP endpoint, served beside the control socket on the control channel's thread.

A few read-only routes (``/metrics``, ``/healthz``, ``/readyz``) for Prometheus and for health probes: one
request per connection (``Connection: close``), ``GET`` and ``HEAD`` only, requests of at most
:data:`MAX_REQUEST_BYTES`. Serving them needs no web framework and no thread of its own: the control
channel's selector loop reads the request and writes the reply.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from pca_core.agent.control.protocol import ControlError

_log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8 * 1024
"""The largest request (request line and headers) the endpoint reads."""

_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What a route answers: a status and a body."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], HttpReply]
"""A route: called on the control channel's thread for each request; it must be quick."""


@dataclass(frozen=True, slots=True)
class HttpService:
    """The endpoint: where it listens and its routes by path.

    Attributes:
        address: (host, port) to listen on.
        routes: the routes by path, such as ``/metrics``.
    """

    address: tuple[str, int]
    routes: Mapping[str, Route] = field(default_factory=dict)

    def listen(self) -> socket.socket:
        """A non-blocking listening socket on :attr:`address`.

        Raises:
            ControlError: the address cannot be listened on (in use, not local...); the message says which.
        """
        host, port = self.address
        try:
            listener = socket.create_server((host, port), family=_family(host), backlog=8)
        except OSError as exc:
            raise ControlError(f"cannot listen on http.listen {host}:{port}: {exc.strerror or exc}") from None
        listener.setblocking(False)
        return listener

    def answer(self, request: bytes) -> bytes:
        """The whole response to ``request`` (complete, or cut at :data:`MAX_REQUEST_BYTES`)."""
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(HttpReply(HTTPStatus.BAD_REQUEST, b"bad request\n"), head=False)
        method, target = parts[0], parts[1].split("?", 1)[0]
        if _END not in request:
            return _response(HttpReply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request too large\n"),
                             head=False)
        if method not in ("GET", "HEAD"):
            return _response(HttpReply(HTTPStatus.METHOD_NOT_ALLOWED, b"GET or HEAD only\n"), head=False,
                             extra="Allow: GET, HEAD\r\n")
        route = self.routes.get(target)
        if route is None:
            known = ", ".join(sorted(self.routes))
            return _response(HttpReply(HTTPStatus.NOT_FOUND, f"not found; try {known}\n".encode()),
                             head=method == "HEAD")
        try:
            reply = route()
        except Exception:  # a bug in a route must not end the channel; the operator sees a 500
            _log.exception("http endpoint: %s failed", target)
            reply = HttpReply(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error; see the agent's log\n")
        return _response(reply, head=method == "HEAD")

    @staticmethod
    def complete(request: bytes) -> bool:
        """Whether ``request`` holds a whole request head, or as much as will be read."""
        return _END in request or len(request) >= MAX_REQUEST_BYTES

    @staticmethod
    def unavailable() -> bytes:
        """The response to a request still being read when the agent stops."""
        reply = HttpReply(HTTPStatus.SERVICE_UNAVAILABLE, b"the agent is shutting down\n")
        return _response(reply, head=False)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _response(reply: HttpReply, *, head: bool, extra: str = "") -> bytes:
    status = HTTPStatus(reply.status)
    header = (f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {reply.content_type}\r\n"
              f"Content-Length: {len(reply.body)}\r\n{extra}Connection: close\r\n\r\n")
    return header.encode("latin-1") + (b"" if head else reply.body)
