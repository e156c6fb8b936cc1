"""The listening socket, bound before anything says it is serving."""

from __future__ import annotations

import errno
import socket

from modelserve.core.errors import AppError


class AddressUnavailable(AppError):
    """The server cannot listen where it was asked to (port in use, address not local)."""

    code = "address_unavailable"


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), as Uvicorn and Gunicorn bind
    theirs (``SO_REUSEADDR``, so a port in TIME_WAIT is free); ``AddressUnavailable`` says why
    not in a sentence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressUnavailable(
                f"Port {port} on {host} is already in use (is another server running?); "
                "choose another with --port or MODELSERVE_PORT."
            ) from exc
        raise AddressUnavailable(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    return sock
