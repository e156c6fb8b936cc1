"""The HTTP/1.1 edge of a real ``modelserve serve`` process, over raw sockets: read timeouts for
headers, bodies and idle connections, protocol errors in the JSON envelope, and what writing a
response's head with its body must keep: HEAD answers, 100 Continue, pipelined requests."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from processes import running_server

pytestmark = pytest.mark.slow

# Short timeouts so the tests are lean; every wait below is bounded by WAIT, far longer, so
# a server that never closes fails the test instead of hanging it.
TIMEOUTS = {"header_timeout_seconds": "1", "body_timeout_seconds": "1", "keepalive_seconds": "1"}
WAIT = 15.0


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def address(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """A server on a fresh SQLite database: one Uvicorn process, or Gunicorn with 2 workers."""
    data = tmp_path_factory.mktemp("server")
    args = ("--workers", "2") if request.param == "gunicorn" else ()
    with running_server(f"sqlite:///{data / 'db.sqlite'}", data, *args, **TIMEOUTS) as (base, _):
        yield _host_port(base)


def _host_port(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=WAIT)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _envelope(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body)


def test_slow_headers_are_closed_after_the_header_timeout(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        status, body = _envelope(_read_until_closed(sock))
    assert status == 408
    assert body["code"] == "request_timeout"


def test_a_silent_connection_is_closed_after_the_header_timeout(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        status, _ = _envelope(_read_until_closed(sock))
    assert status == 408


def test_a_trickled_body_is_a_408_in_the_envelope(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"refresh'
        )
        status, body = _envelope(_read_until_closed(sock))
    assert status == 408
    assert body["code"] == "request_timeout"


def test_an_idle_keep_alive_connection_is_closed(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = _read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200")


def test_request_smuggling_is_a_400_in_the_envelope(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
        )
        status, body = _envelope(_read_until_closed(sock))
    assert status == 400
    assert body["code"] == "bad_request"


def _read_until(sock: socket.socket, done: Callable[[bytes], bool], received: bytes = b"") -> bytes:
    """What the server sends until ``done`` holds of it (a close before that fails)."""
    while not done(received):
        received += sock.recv(65536) or pytest.fail(f"closed after {received!r}")
    return received


def _has_head(received: bytes) -> bool:
    return b"\r\n\r\n" in received


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and a ``Content-Length`` body) read off a kept-alive socket."""
    head, _, body = _read_until(sock, _has_head).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = _read_until(sock, lambda got: len(got) >= length, body)
    return head + b"\r\n\r\n" + body


def test_a_body_in_parts_within_the_timeout_is_read(address: tuple[str, int]) -> None:
    # The body clock only runs while the body is on its way: here the read waits for part two.
    head = (
        b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 27\r\n\r\n"
    )
    with _connect(address) as sock:
        sock.sendall(head + b'{"refresh_token"')
        time.sleep(0.3)
        sock.sendall(b': "nope"}\r\n')
        status, body = _envelope(_response(sock))
    assert status == 401, body
    assert body["code"] != "request_timeout"


def test_a_response_without_a_body_sends_its_head(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = _read_until(sock, _has_head)
        assert received.startswith(b"HTTP/1.1 "), received
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
        assert _response(sock).startswith(b"HTTP/1.1 200")


def test_100_continue_is_sent_before_the_body(address: tuple[str, int]) -> None:
    body = b'{"refresh_token": "nope"}'
    with _connect(address) as sock:
        sock.sendall(
            b"POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        interim = _read_until(sock, _has_head)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        sock.sendall(body)
        status, _ = _envelope(_response(sock))
    assert status == 401


def _answered(count: int, received: bytes) -> bool:
    """Whether ``count`` responses are in, the last one's JSON body whole."""
    return received.count(b"HTTP/1.1 ") >= count and received.endswith(b"}")


def test_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
            + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = _read_until(sock, partial(_answered, 3))
    statuses = [int(part.split(b" ", 1)[0]) for part in received.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 200, 404]


def test_a_pipelined_head_request_is_answered_before_the_next(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = _read_until(sock, partial(_answered, 2))
    head, _, rest = received.partition(b"\r\n\r\n")  # a head and no body (405: GET only)
    assert head.startswith(b"HTTP/1.1 405"), received
    assert rest.startswith(b"HTTP/1.1 200"), received


@pytest.mark.parametrize("clock", ["keep-alive", "headers"])
@pytest.mark.parametrize("sent", ["while stopped", "after resuming"])
def test_a_request_sent_around_a_held_up_server_is_answered(
    tmp_path: Path, clock: str, sent: str
) -> None:
    # The server is stopped past a timeout. "while stopped": the request reaches its socket
    # meanwhile; on resuming, uvloop runs the due timer before it reads the socket. "after
    # resuming": the client was frozen with it (a paused virtual machine) and sends just after
    # the server's late timers ran. Either way the request is answered.
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with (
        running_server(database, tmp_path, **TIMEOUTS) as (base, process),
        _connect(_host_port(base)) as sock,
    ):
        if clock == "keep-alive":  # one answer first: the connection is then idle
            sock.sendall(request)
            assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # the server has taken the connection and armed the clock
        os.kill(process.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)  # the 1 s timeouts ran out over a second ago
            if sent == "while stopped":
                sock.sendall(request)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        if sent == "after resuming":
            time.sleep(0.3)  # the server has run its timers
            sock.sendall(request)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # the server has taken the connection and armed the clock
        os.kill(process.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)  # past the 1 s timeouts
            sock.sendall(request)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert _response(sock).startswith(b"HTTP/1.1 200")
