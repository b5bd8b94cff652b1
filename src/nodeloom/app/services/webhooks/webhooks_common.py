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
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the IPv4 address it carries.
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast
