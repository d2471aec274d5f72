"""Noticing a proxy nobody told us about.

Behind nginx or a load balancer, every connection comes from the proxy: unless its
address is in GATEWAY_TRUSTED_PROXIES, its X-Forwarded-For is (rightly) not believed,
and every viewer looks like the proxy: one playback link plays at any number of
addresses as one place, and all viewers share one address's QR budget. Nothing breaks
loudly, so the service says it: one warning naming the fix, and /readyz carries it.
"""

from __future__ import annotations

import logging

from gateway.logs import log_event

log = logging.getLogger("gateway.forwarding")


class UntrustedForwarding:
    def __init__(self) -> None:
        self.peer: str | None = None  # the first such proxy seen, if any
        self.requests = 0

    def saw(self, peer: str) -> None:
        """A request carried X-Forwarded-For from `peer`, which is not trusted."""
        self.requests += 1
        if self.peer is None:
            self.peer = peer
            log_event(log, "untrusted_proxy", level=logging.WARNING, peer=peer,
                      hint=self.hint)

    @property
    def hint(self) -> str:
        return (f"requests arrive through a proxy at {self.peer} whose X-Forwarded-For is "
                f"not believed: add it to GATEWAY_TRUSTED_PROXIES (e.g. "
                f"GATEWAY_TRUSTED_PROXIES={self.peer}), or every viewer is that proxy")
