"""Listening sockets for the local servers, bound before anything slow happens.

A server that loads a model first and binds afterwards makes its user wait seconds to learn that
the port was taken. :func:`listen` binds at once and, when it cannot, raises an error whose message
names ``host:port`` and the fix. Only the standard library: the command line imports this module.
"""

from __future__ import annotations

import errno
import socket


class ListenError(OSError):
    """A server cannot listen on its address; the message names it and what to do."""


def listen_error(host: str, port: int, error: OSError, option: str = "--port") -> str:
    """One line on why ``host:port`` cannot be listened on, and the fix (``option`` is the
    command-line option that picks another port)."""
    address = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {address}: address already in use; stop what listens there or "
            f"choose another port with {option}"
        )
    if error.errno == errno.EACCES:
        return (
            f"cannot listen on {address}: permission denied; choose a port above 1023 with {option}"
        )
    reason = error.strerror or str(error)
    return f"cannot listen on {address}: {reason}; check --host, or choose a port with {option}"


def listen(host: str, port: int, *, option: str = "--port", backlog: int = 1024) -> socket.socket:
    """A TCP socket listening on ``host:port`` (SO_REUSEADDR, as the HTTP servers set it).

    Raises:
        ListenError: the address is taken, not allowed or not this machine's, with the message of
            :func:`listen_error`.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise ListenError(
            f"cannot listen on {host}:{port}: unknown host ({error.strerror}); check --host"
        ) from None
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
    except OSError as error:
        listener.close()
        problem = ListenError(listen_error(host, port, error, option))
        problem.errno = error.errno
        raise problem from None
    return listener


def check_free(host: str, port: int, *, option: str = "--port") -> None:
    """Raises :class:`ListenError` if ``host:port`` cannot be listened on right now."""
    listen(host, port, option=option, backlog=1).close()
