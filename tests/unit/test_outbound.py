"""The outbound request guard (idp.oidc.outbound): which URLs and addresses the provider
connects to when an application registered them, and the request itself."""

from __future__ import annotations

import pytest

from idp.oidc.outbound import (
    OutboundError,
    OutboundPolicy,
    address_refusal,
    check_target,
    request,
)
from tests.support.webhook import Answer, Webhook

PRODUCTION = OutboundPolicy()
DEVELOPMENT = OutboundPolicy(allow_loopback=True)
PRIVATE_OK = OutboundPolicy(allow_private=True)


def resolving_to(*addresses: str):
    def resolver(host, port, **kwargs):
        return [(2, 1, 6, "", (a, port)) for a in addresses]

    return resolver


@pytest.mark.parametrize(
    ("address", "production", "development", "private_ok"),
    [
        ("93.184.216.34", None, None, None),
        ("2606:2800:220:1:248:1893:25c8:1946", None, None, None),
        ("127.0.0.1", "loopback", None, "loopback"),
        ("::1", "loopback", None, "loopback"),
        ("::ffff:127.0.0.1", "loopback", None, "loopback"),
        ("10.1.2.3", "private", "private", None),
        ("172.16.0.1", "private", "private", None),
        ("192.168.0.10", "private", "private", None),
        ("::ffff:192.168.0.10", "private", "private", None),
        ("100.64.0.1", "private", "private", None),  # carrier-grade NAT
        ("fd00::1", "private", "private", None),  # unique local
        ("169.254.169.254", "link-local", "link-local", "link-local"),  # cloud metadata
        ("fe80::1", "link-local", "link-local", "link-local"),
        ("0.0.0.0", "unicast", "unicast", "unicast"),
        ("224.0.0.1", "unicast", "unicast", "unicast"),
        ("240.0.0.1", "unicast", "unicast", "unicast"),
        ("::", "unicast", "unicast", "unicast"),
    ],
)
def test_addresses(address, production, development, private_ok):
    for policy, expected in ((PRODUCTION, production), (DEVELOPMENT, development),
                             (PRIVATE_OK, private_ok)):  # fmt: skip
        why = address_refusal(address, policy)
        if expected is None:
            assert why is None, (address, policy, why)
        else:
            assert why is not None and expected in why, (address, policy, why)


def test_every_address_of_the_host_is_checked():
    with pytest.raises(OutboundError, match="10.0.0.1 is a private address"):
        check_target("https://rp.example.gov/x", PRODUCTION,
                     resolver=resolving_to("93.184.216.34", "10.0.0.1"))  # fmt: skip
    target = check_target("https://rp.example.gov:8443/bcl?tenant=1", PRODUCTION,
                          resolver=resolving_to("93.184.216.34"))  # fmt: skip
    assert (target.host, target.port, target.path) == ("rp.example.gov", 8443, "/bcl?tenant=1")
    assert target.addresses == ("93.184.216.34",)
    assert target.host_header == "rp.example.gov:8443"


@pytest.mark.parametrize(
    ("url", "policy", "why"),
    [
        ("http://rp.example.gov/x", DEVELOPMENT, "plain http"),
        ("http://localhost:8080/x", PRODUCTION, "plain http"),
        ("ftp://rp.example.gov/x", PRODUCTION, "https://"),
        ("https://user:pw@rp.example.gov/x", PRODUCTION, "user information"),
        ("https:///x", PRODUCTION, "no host"),
        ("https://[::1/x", PRODUCTION, "not valid"),
    ],
)
def test_urls_that_are_refused_before_any_lookup(url, policy, why):
    def resolver(*args, **kwargs):
        raise AssertionError("no lookup for a refused URL")

    with pytest.raises(OutboundError, match=why):
        check_target(url, policy, resolver=resolver)


def test_a_host_that_does_not_resolve():
    def resolver(*args, **kwargs):
        raise OSError("Name or service not known")

    with pytest.raises(OutboundError, match="cannot be resolved"):
        check_target("https://nowhere.invalid/x", PRODUCTION, resolver=resolver)


def test_loopback_http_is_allowed_in_development_only():
    target = check_target("http://localhost:5001/bcl", DEVELOPMENT,
                          resolver=resolving_to("127.0.0.1", "::1"))  # fmt: skip
    assert target.addresses == ("127.0.0.1", "::1") and target.host_header == "localhost:5001"


def test_a_request_posts_a_form_and_reads_a_bounded_answer():
    with Webhook(Answer(200, b"x" * 10_000)) as hook:
        policy = OutboundPolicy(allow_loopback=True, max_bytes=100)
        resp = request("POST", hook.url("/bcl"), policy, form={"logout_token": "a.b.c"},
                       truncate=True)  # fmt: skip
        assert resp.status == 200 and resp.body == b"x" * 100
        [seen] = hook.requests
        assert seen.form == {"logout_token": "a.b.c"}
        assert seen.headers["Host"] == f"127.0.0.1:{hook.port}"
        with pytest.raises(OutboundError, match="larger than 100 bytes"):
            request("GET", hook.url("/jwks"), policy)


def test_redirects_are_answers_not_instructions():
    with Webhook(Answer(301, headers={"Location": "/moved"})) as hook:
        resp = request("GET", hook.url("/jwks"), DEVELOPMENT)
        assert resp.status == 301
        assert [r.path for r in hook.requests] == ["/jwks"]


def test_one_deadline_for_the_whole_request():
    import time

    with Webhook(Answer("hang"), hang_seconds=3) as hook:
        started = time.monotonic()
        with pytest.raises(OutboundError):
            request("GET", hook.url("/slow"), OutboundPolicy(allow_loopback=True, timeout=0.5))
        assert time.monotonic() - started < 1.5


def test_a_closed_port_is_an_error_not_a_crash():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OutboundError, match="could not be reached"):
        request("GET", f"http://127.0.0.1:{port}/", DEVELOPMENT)
