"""The operator's HTTP endpoint on the control channel's thread: requests, refusals, failures, shutdown.

Real sockets: a control server with an HTTP service on a free loopback port, spoken to with raw requests
(what a probe or a scanner might send) and with urllib.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from http import HTTPStatus

import pytest

from pca_core.agent.control import ControlError, ControlServer, call
from pca_core.agent.control.http import MAX_REQUEST_BYTES, HttpReply, HttpService
from tests.core.test_control import serve, short_dir, sock_path  # noqa: F401 - fixtures
from tests.support.ports import free_port
from tests.support.waiting import wait_until

HUGE = (b"GET /hello HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_BYTES)[:MAX_REQUEST_BYTES]
"""A request head as long as the endpoint reads, and not finished."""


def _broken() -> HttpReply:
    raise RuntimeError("a bug in a route")


@pytest.fixture
def endpoint(sock_path, serve):  # noqa: F811 - the fixtures imported above
    port = free_port()
    service = HttpService(("127.0.0.1", port), {
        "/hello": lambda: HttpReply(HTTPStatus.OK, b"hello\n"),
        "/broken": _broken,
    })
    server = serve(sock_path, {"status": lambda _a: {"phase": "active"}}, http=service)
    return server, port


def raw(port: int, data: bytes) -> bytes:
    """Sends ``data`` and reads the response to its end (the endpoint closes each connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_route_and_the_control_socket_are_served_by_the_one_thread(endpoint, sock_path):  # noqa: F811
    _server, port = endpoint
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?x=1", timeout=10) as response:
        assert (response.status, response.read()) == (200, b"hello\n")
        assert response.headers["Connection"] == "close"
    assert call(sock_path, "status") == {"phase": "active"}
    assert [thread.name for thread in threading.enumerate()].count("pca-control") == 1


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404 Not Found"),
    (b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405 Method Not Allowed"),
    (b"hello there\r\n\r\n", b"400 Bad Request"),
    (HUGE, b"431 Request Header Fields Too Large"),
    (b"GET /broken HTTP/1.1\r\n\r\n", b"500 Internal Server Error"),
])
def test_what_is_not_a_served_request_gets_a_status_and_the_endpoint_keeps_serving(endpoint, request_bytes,
                                                                                   status):
    _server, port = endpoint
    assert raw(port, request_bytes).startswith(b"HTTP/1.1 " + status)
    assert raw(port, b"GET /hello HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\nhello\n")


def test_head_has_the_length_and_no_body(endpoint):
    _server, port = endpoint
    response = raw(port, b"HEAD /hello HTTP/1.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 6\r\n" in response
    assert response.endswith(b"\r\n\r\n")


def test_a_request_still_being_read_at_shutdown_is_told_so(endpoint):
    server, port = endpoint
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\n")  # no end of the head yet
        closing = threading.Thread(target=server.close, args=(10.0,))
        closing.start()
        response = sock.recv(65536)
        closing.join(10)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable")


def test_a_connection_not_yet_accepted_at_shutdown_is_told_so_not_reset(sock_path, serve):  # noqa: F811
    held, release = threading.Event(), threading.Event()

    def slow() -> HttpReply:
        held.set()
        release.wait(10)
        return HttpReply(HTTPStatus.OK, b"slow\n")

    port = free_port()
    server = serve(sock_path, {}, http=HttpService(("127.0.0.1", port), {"/slow": slow}))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        first.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        assert held.wait(10)  # the thread is in the route: the next connection waits in the backlog
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            closing = threading.Thread(target=server.close, args=(10.0,))
            closing.start()
            assert wait_until(lambda: server._closed, 10)  # close() has begun; the thread is still held
            release.set()
            assert second.recv(65536).startswith(b"HTTP/1.1 503 Service Unavailable")
        assert first.recv(65536).startswith(b"HTTP/1.1 200 OK")
        closing.join(10)


def test_an_address_in_use_is_refused_with_the_key_and_the_socket_is_not_left(sock_path):  # noqa: F811
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        server = ControlServer(sock_path, {}, http=HttpService(("127.0.0.1", port)))
        with pytest.raises(ControlError, match=rf"cannot listen on http\.listen 127\.0\.0\.1:{port}: "):
            server.start()
        assert not sock_path.exists()
    finally:
        taken.close()
