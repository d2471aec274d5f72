"""Where a request comes from (SPEC, Devices): the connection's address, or what a
trusted proxy says in `X-Forwarded-For` / `X-Real-IP`.

Anyone can send those headers, so they are believed only when the connection itself
comes from GATEWAY_TRUSTED_PROXIES. The client is then the rightmost `X-Forwarded-For`
address that is not a trusted proxy: each proxy appends the address it was connected
from, so everything left of the last untrusted hop was written by the client and
proves nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_ADDRESS_CHARS = 64  # a bound on what an odd header can make us keep as a key


class ClientAddresses:
    def __init__(self, trusted_proxies: Sequence[Network]) -> None:
        self._trusted = tuple(trusted_proxies)
        # The gate asks on every request, and a few addresses ask most of the time.
        self._is_trusted = functools.lru_cache(maxsize=4096)(self._trusted_uncached)
        self._from_forwarded = functools.lru_cache(maxsize=16384)(self._rightmost_untrusted)

    def client(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The client's address for a request whose connection came from `peer`."""
        peer = peer or ""
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = headers.get("X-Forwarded-For")
        if forwarded:
            return self._from_forwarded(forwarded) or peer
        real_ip = headers.get("X-Real-IP")
        if real_ip:
            return _normalised(real_ip.strip()) or peer
        return peer

    def _trusted_uncached(self, address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self._trusted)

    def _rightmost_untrusted(self, forwarded: str) -> str | None:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return _normalised(hop)
        # Every hop is one of ours: the leftmost is as close to the client as we know.
        return _normalised(hops[0]) if hops else None


def _normalised(address: str) -> str | None:
    """One spelling per address (so `::1` and `0:0::1` are one place), or, for something
    a trusted proxy passed on that is not an address, the text itself, bounded."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address[:_MAX_ADDRESS_CHARS] or None
