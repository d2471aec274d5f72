"""Client addresses: the connection's, or a trusted proxy's word for it."""

from __future__ import annotations

import ipaddress

from gateway.client_address import ClientAddresses

PROXIES = ClientAddresses([ipaddress.ip_network("10.0.0.0/8"),
                           ipaddress.ip_network("2001:db8::1/128")])


def test_without_trusted_proxies_the_headers_are_never_read() -> None:
    plain = ClientAddresses([])
    assert plain.client("198.51.100.7", {"X-Forwarded-For": "1.2.3.4",
                                         "X-Real-IP": "5.6.7.8"}) == "198.51.100.7"


def test_an_untrusted_connection_cannot_name_another_client() -> None:
    assert PROXIES.client("198.51.100.7", {"X-Forwarded-For": "1.2.3.4"}) == "198.51.100.7"
    assert PROXIES.client("198.51.100.7", {"X-Real-IP": "1.2.3.4"}) == "198.51.100.7"


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.1.1.1"}
    assert PROXIES.client("10.0.0.2", headers) == "203.0.113.5"
    assert PROXIES.client("10.0.0.2", {"X-Forwarded-For": "203.0.113.5"}) == "203.0.113.5"


def test_a_chain_of_only_proxies_gives_the_leftmost() -> None:
    assert PROXIES.client("10.0.0.2", {"X-Forwarded-For": "10.9.9.9, 10.1.1.1"}) == "10.9.9.9"


def test_x_real_ip_when_there_is_no_forwarded_for() -> None:
    assert PROXIES.client("10.0.0.2", {"X-Real-IP": " 203.0.113.9 "}) == "203.0.113.9"
    assert PROXIES.client("10.0.0.2", {}) == "10.0.0.2"


def test_one_spelling_per_address() -> None:
    assert PROXIES.client("2001:db8::1", {"X-Forwarded-For": "2001:DB8:0:0::7"}) == "2001:db8::7"
