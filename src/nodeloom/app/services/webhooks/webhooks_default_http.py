"""The HTTP calls of `HttpWebhookService`: to an address checked before connecting, within a deadline, cut on demand.

httpx resolves the host itself when it connects, so the address it reaches could differ from one checked before
(DNS rebinding), and its timeouts bound each read, not a whole call. Here the host is resolved once, the address
is checked, the socket connects to that very address (TLS still verifies the host's name), and every socket under
way is known, so that a watcher can cut a call at its deadline and `close()` can cut them all at once.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodeloom.app.services.webhooks.webhooks_common import WebhookAddressError, is_public

_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _cut(sock: socket.socket) -> None:
    """Ends the socket's connection, waking a thread blocked on it in connect, send or receive."""
    # Not connected yet or already closed: the owner's next call on it fails all the same.
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for a TLS socket: SSLSocket.shutdown would unwrap it under the
        # thread still reading it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _InFlight:
    """The sockets of the calls under way with their deadlines; a thread cuts each one that outlives its deadline."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._deadlines: dict[socket.socket, float] = {}
        self._closed = False
        self._watcher = threading.Thread(target=self._watch, name="nodeloom-webhook-deadlines", daemon=True)
        self._watcher.start()

    def add(self, sock: socket.socket, deadline: float) -> None:
        with self._changed:
            if self._closed:
                raise ConnectionAbortedError("webhook calls are stopping")
            self._deadlines[sock] = deadline
            self._changed.notify()

    def remove(self, sock: socket.socket) -> None:
        with self._changed:
            self._deadlines.pop(sock, None)

    def close(self) -> None:
        """Cuts every call under way and refuses new ones."""
        with self._changed:
            self._closed = True
            for sock in self._deadlines:
                _cut(sock)
            self._deadlines.clear()
            self._changed.notify()
        self._watcher.join()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                for sock, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        _cut(sock)
                        del self._deadlines[sock]
                next_deadline = min(self._deadlines.values(), default=None)
                self._changed.wait(None if next_deadline is None else next_deadline - now)


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to `host` made to the first that answers of addresses resolved and checked before."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[_AddrInfo],
        tls: ssl.SSLContext | None,
        in_flight: _InFlight,
        deadline: float,
    ) -> None:
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        self._addresses = addresses
        self._tls = tls
        self._in_flight = in_flight
        self._deadline = deadline

    def connect(self) -> None:
        error: OSError | None = None
        for address in self._addresses:
            try:
                sock = self._connect_to(address)
                break
            except OSError as e:
                error = e
        else:
            assert error is not None, "a host has at least one address"
            raise error
        if self._tls is not None:
            self._in_flight.remove(sock)
            try:
                # The new socket takes over the descriptor; the name verified is the host's, not the address.
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
            self._in_flight.add(sock, self._deadline)
        self.sock = sock

    def _connect_to(self, address: _AddrInfo) -> socket.socket:
        family, kind, proto, _, sockaddr = address
        sock = socket.socket(family, kind, proto)
        try:
            # Known before connecting, so that a cut ends a connect that hangs too.
            self._in_flight.add(sock, self._deadline)
            sock.settimeout(max(self._deadline - time.monotonic(), 0.001))
            sock.connect(sockaddr)
        except BaseException:
            self._in_flight.remove(sock)
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self._in_flight.remove(self.sock)
        super().close()


@dataclass(frozen=True)
class Endpoint:
    """A webhook URL whose host has been resolved and checked: every try of its call connects to these addresses."""

    host: str
    port: int
    tls: bool
    request_target: str
    """The path and query, as the request line names them."""
    addresses: tuple[_AddrInfo, ...]

    @property
    def target(self) -> str:
        """The address and port a call connects to first: the server it loads, however its name is spelled or
        whichever of its names the URL uses."""
        address = str(self.addresses[0][4][0])
        return f"[{address}]:{self.port}" if ":" in address else f"{address}:{self.port}"


class WebhookCaller:
    """POSTs webhook calls, each within `timeout_s`, only to public addresses unless `allow_private`."""

    def __init__(self, timeout_s: float, allow_private: bool) -> None:
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._tls = ssl.create_default_context()
        self._in_flight = _InFlight()

    def resolve(self, url: str) -> Endpoint:
        """`url`'s endpoint, its host resolved once; raises `WebhookAddressError` when the host has no address it
        may reach, an `OSError` when it does not resolve."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        request_target = parts.path or "/"
        if parts.query:
            request_target += f"?{parts.query}"
        return Endpoint(host, port, tls, request_target, tuple(self._addresses(host, port)))

    def post(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> int:
        """The status code of the answer to POSTing `body` to the endpoint.

        Raises `TimeoutError` when the call outlives its deadline, and other `OSError`s and
        `http.client.HTTPException`s as the call fails.
        """
        deadline = time.monotonic() + self._timeout_s
        tls = self._tls if endpoint.tls else None
        connection = _PinnedConnection(
            endpoint.host, endpoint.port, list(endpoint.addresses), tls, self._in_flight, deadline
        )
        try:
            connection.request("POST", endpoint.request_target, body=body, headers=dict(headers))
            with connection.getresponse() as response:
                return response.status
        except OSError as e:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer within {self._timeout_s} s") from e
            raise
        finally:
            connection.close()

    def close(self) -> None:
        """Cuts every call under way; a call made after this fails at once."""
        self._in_flight.close()

    def _addresses(self, host: str, port: int) -> list[_AddrInfo]:
        """The addresses of `host` that may be reached, in the resolver's order: the only ones the call tries."""
        addresses: Sequence[_AddrInfo] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        allowed = [a for a in addresses if self._allow_private or is_public(ipaddress.ip_address(a[4][0]))]
        if allowed:
            return allowed
        found = ", ".join(sorted({str(address[4][0]) for address in addresses}))
        raise WebhookAddressError(
            f"'{host}' resolves only to addresses that are not public ({found}); "
            "set webhook_allow_private to call such addresses"
        )
