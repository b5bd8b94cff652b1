"""What a webhook call carries and where it may go: its signature headers and the check of its address."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from nodeloom.errors import NodeloomError

TIMESTAMP_HEADER = "X-Nodeloom-Timestamp"
"""The call's time in whole seconds since the epoch, part of what is signed, so that an old call cannot be replayed."""
SIGNATURE_HEADER = "X-Nodeloom-Signature"
"""`sha256=` and the hex HMAC SHA-256 of `{timestamp}.` and the body's exact bytes, under `webhook_secret`."""


class WebhookAddressError(NodeloomError):
    """The callback URL's host has no address that webhooks may reach."""


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of the signature header for a call made at `timestamp` with `body`."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the address is a public unicast one: not loopback, link-local, private, multicast, unspecified,
    shared (carrier NAT), documentation or otherwise reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            address = carried
    return address.is_global and not address.is_multicast


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"))


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, where it carries one: mapped (::ffff:10.0.0.1), NAT64
    (64:ff9b::a00:1), 6to4 (2002:a00:1::), IPv4-compatible (::10.0.0.1) or IPv4-translated (::ffff:0:a00:1)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in (*_NAT64, *_IPV4_COMPATIBLE)):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
