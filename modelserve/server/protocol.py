"""Uvicorn's HTTP/1.1 protocol (httptools) with a header-read timeout and errors in the envelope.

Uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not a request whose
headers trickle in: a client sending one header byte at a time held its connection forever
(slowloris). Here a connection must deliver a request's whole header block within
``header_timeout`` seconds of opening, or of the request's first byte on a kept-alive
connection; else it gets a 408 and is closed. Body reads are timed in the app
(``RequestBodyMiddleware``), where the answer can go through the error handlers.

Requests the parser refuses (malformed, or ``Content-Length`` with ``Transfer-Encoding``, the
request-smuggling shape) are answered by the protocol itself, before any app runs: here with
the JSON error envelope instead of Uvicorn's plain text.

An idle keep-alive connection whose time is up is not closed while bytes wait unread in its
socket (``FIONREAD``), and a header timeout that runs out closes its connection one poll of the
sockets later (``_INPUT_GRACE_SECONDS``): a request which arrived while the event loop was held
up is read first and served. A timeout that fires late (the process, or its whole virtual
machine, was not running) gives the connection ``_RESUMED_GRACE_SECONDS`` more: its client was
frozen too, and may be sending on it just as the server's timers run.

A response's head is written with its first body bytes (``HeadWithBody``): Uvicorn writes
them as they come, the head at ``http.response.start`` and the body after it, two ``send``
system calls and two TCP segments for every answer.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a header timeout and enveloped protocol errors. Subclass it
    with ``header_timeout`` set (``protocol_class``)."""

    header_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are timed from here (unless already timed)."""
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        """The headers are in: stop the clock, then let Uvicorn start the request, whose
        response head waits for its body."""
        self._cancel_header_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            held = HeadWithBody(self.transport, cycle)
            cycle.transport = held  # type: ignore[assignment]
            cycle.on_response = partial(_completed, held, cycle.on_response)

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused, answered in the envelope; the connection closes."""
        self._answer_and_close(400, "bad_request", msg)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def timeout_keep_alive_handler(self) -> None:
        """An idle keep-alive connection's time is up: it closes, unless bytes wait unread in
        its socket (a request already sent: read and answered, and the idle clock starts
        again), or the clock ran out while this process was not running (the timer fired
        late): then a client frozen with it gets ``_RESUMED_GRACE_SECONDS`` to send what it
        was sending. Either way a kept-alive client would otherwise see "server disconnected
        without sending a response"."""
        timer = self.timeout_keep_alive_task
        self.timeout_keep_alive_task = None
        if self.transport.is_closing():
            return
        if _unread_bytes(self.transport) > 0:
            wait = float(self.timeout_keep_alive)
        elif _ran_late(timer, self.loop):
            wait = _RESUMED_GRACE_SECONDS
        else:
            self.transport.close()
            return
        self.timeout_keep_alive_task = self.loop.call_later(wait, self.timeout_keep_alive_handler)

    def _headers_too_slow(self) -> None:
        """The header clock ran out: one more look at the socket (``_INPUT_GRACE_SECONDS``, or
        ``_RESUMED_GRACE_SECONDS`` when the clock ran out while this process was not running),
        then the 408."""
        late = _ran_late(self._header_timer, self.loop)
        grace = _RESUMED_GRACE_SECONDS if late else _INPUT_GRACE_SECONDS
        self._header_timer = self.loop.call_later(grace, self._headers_still_slow)

    def _headers_still_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is being written: no room for another
            return
        message = f"The request headers did not arrive within {self.header_timeout:g} s."
        self._answer_and_close(408, "request_timeout", message)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        body = orjson.dumps({"code": code, "message": message, "details": None})
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()


_INPUT_GRACE_SECONDS = 0.001
"""How long a header timeout waits to close its connection once it has run out. libuv (uvloop)
runs the timers that are due before it reads the sockets when its poll was cut short (a
stopped or held-up process): a request whose headers were already in the socket's buffer found
its connection closed. One poll later they have been read, which cancels the timeout."""

_LATE_SECONDS = 1.0
"""A timer that fires this much after its time says this process was not running: stopped, or
its whole virtual machine paused (a snapshot pauses this CI's machines for seconds, and the
monotonic clock counts the pause). Its peers were frozen with it and did not idle that long."""

_RESUMED_GRACE_SECONDS = 2.0
"""How long a connection whose timeout fired late stays open for its client to go on: a client
that had checked its connection and was sending its next request when the machine paused sends
it on resuming, maybe after the server's timers have run."""


def _ran_late(timer: asyncio.TimerHandle | None, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``timer``, which has just fired, fired ``_LATE_SECONDS`` or more after its time."""
    return timer is not None and loop.time() - timer.when() >= _LATE_SECONDS


def _unread_bytes(transport: asyncio.Transport) -> int:
    """How many received bytes wait unread in the transport's socket (0 when that cannot be
    told: no socket, or a platform without ``FIONREAD``)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    pending = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, pending)
    except (OSError, ValueError):
        return 0
    return pending[0]


class HeadWithBody:
    """A request cycle's transport that holds the response's head until its first body bytes
    and writes both at once. Anything else is written at once (``100 Continue``, which the
    client waits for before it sends the body, is written before the response starts); the
    head alone goes out when the response completes without a body, or the connection
    closes."""

    __slots__ = ("_cycle", "_head", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._held = False

    def write(self, data: bytes) -> None:
        """Write ``data``, after the held head; the response's head itself is held."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._held and self._cycle.response_started:
            self._held = True
            self._head = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write the head if it is still held."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        """Close the connection once the held head, if any, is written."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _completed(held: HeadWithBody, on_response: Callable[[], None]) -> None:
    """A cycle's response is complete: its head goes out if no body took it (HEAD, 204, 304),
    before the connection goes on to a pipelined request."""
    held.flush()
    on_response()


def protocol_class(header_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to give Uvicorn (``http=``) for this header timeout."""
    return type(
        "ModelserveHttpProtocol", (GuardedHttpToolsProtocol,), {"header_timeout": header_timeout}
    )
