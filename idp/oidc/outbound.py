"""HTTP requests to addresses that applications register: back-channel logout URIs
(OpenID Connect Back-Channel Logout 1.0 section 2.5) and ``jwks_uri`` (RFC 7591 2).

Whoever can register a client chooses where the provider connects, so every request
made here is guarded against server-side request forgery (OWASP SSRF Prevention Cheat
Sheet):

- ``https`` only; ``http`` only to a loopback host, and only while loopback is allowed
  (outside production, for local development);
- the host is resolved once and **every** address it resolves to is checked: loopback
  (unless allowed), link-local (169.254.0.0/16 with the cloud metadata service,
  fe80::/10), multicast, unspecified and reserved addresses are refused, and so is any
  other address that is not globally routable (RFC 1918 private networks, CGNAT,
  unique local IPv6) unless private networks are allowed; an IPv4-mapped IPv6 address
  is judged as the IPv4 address it carries;
- the connection goes to an address that was checked (the name is not resolved a
  second time, so DNS rebinding cannot swap it), with the host name kept for TLS
  (SNI and certificate verification) and the ``Host`` header;
- redirects are never followed (a 3xx is an answer like any other);
- one deadline covers connecting, sending and reading, and at most ``max_bytes`` of the
  answer are read (:class:`OutboundError` when it is longer and ``truncate`` is off).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

#: ``socket.getaddrinfo``-shaped resolver (tests pass their own).
Resolver = Callable[..., list[tuple[Any, ...]]]

USER_AGENT = "idp (OpenID Connect provider)"
_LOOPBACK_NAMES = ("localhost", "localhost.")


class OutboundError(Exception):
    """The request was refused before it was sent, or it failed; the message says why
    in words fit for an audit record (never the answer's body)."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Where requests may go and how long they may take."""

    allow_loopback: bool = False
    allow_private: bool = False
    timeout: float = 5.0
    max_bytes: int = 65536


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def address_refusal(address: str, policy: OutboundPolicy) -> str | None:
    """Why *address* (an IP address in text) may not be connected to, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if policy.allow_loopback else f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if not ip.is_global:
        return None if policy.allow_private else f"{ip} is a private address"
    return None


def _is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""

    scheme: str
    host: str  # as written in the URL (IPv6 without brackets)
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_target(
    url: str, policy: OutboundPolicy, *, resolver: Resolver = socket.getaddrinfo
) -> Target:
    """Parse *url* and resolve its host; :class:`OutboundError` when the scheme or any
    address it resolves to is refused by *policy* (see the module docstring)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise OutboundError("the URL is not valid") from None
    if not host or parts.username is not None or parts.password is not None:
        raise OutboundError("the URL has no host, or has user information")
    if parts.scheme == "http":
        if not (_is_loopback_host(host) and policy.allow_loopback):
            raise OutboundError("plain http is allowed only to localhost outside production")
    elif parts.scheme != "https":
        raise OutboundError("the URL must start with https://")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"the host {host} cannot be resolved ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OutboundError(f"the host {host} has no address")
    for address in addresses:
        why = address_refusal(address, policy)
        if why is not None:
            raise OutboundError(f"the host {host} resolves to a refused address: {why}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, tuple(addresses))


def request(
    method: str,
    url: str,
    policy: OutboundPolicy,
    *,
    form: Mapping[str, str] | None = None,
    accept: str = "application/json",
    truncate: bool = False,
    resolver: Resolver = socket.getaddrinfo,
) -> OutboundResponse:
    """Send one request under *policy*; never follows redirects.

    *form* is sent as ``application/x-www-form-urlencoded``. At most
    ``policy.max_bytes`` of the answer are read: with *truncate* the rest is dropped
    unread, otherwise a longer answer is an :class:`OutboundError`."""
    target = check_target(url, policy, resolver=resolver)
    deadline = time.monotonic() + policy.timeout
    headers = {"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": accept}
    body = None
    if form is not None:
        body = urlencode(form).encode("ascii")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    last: Exception | None = None
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        timeout = urllib3.Timeout(connect=remaining, read=remaining)
        kwargs: dict[str, Any] = {"timeout": timeout, "retries": False, "maxsize": 1}
        if target.scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                address, target.port, server_hostname=target.host,
                assert_hostname=target.host, cert_reqs="CERT_REQUIRED", **kwargs,
            )  # fmt: skip
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, **kwargs)
        try:
            resp = pool.urlopen(
                method, target.path, body=body, headers=headers, redirect=False,
                retries=False, preload_content=False, assert_same_host=False,
            )  # fmt: skip
        except (NewConnectionError, ConnectTimeoutError) as exc:
            last = exc
            pool.close()
            continue  # the next address of the host
        except (Urllib3Error, OSError) as exc:
            pool.close()
            raise OutboundError(f"the request to {target.host} failed: {_reason(exc)}") from None
        try:
            data = _read(resp, policy.max_bytes, deadline, truncate=truncate)
            return OutboundResponse(resp.status, dict(resp.headers), data)
        except (Urllib3Error, OSError) as exc:
            why = _reason(exc)
            raise OutboundError(f"reading the answer of {target.host} failed: {why}") from None
        finally:
            resp.release_conn()
            pool.close()
    if last is None:
        raise OutboundError(f"no time was left to reach {target.host}")
    raise OutboundError(f"{target.host} could not be reached: {_reason(last)}")


def _read(resp: Any, limit: int, deadline: float, *, truncate: bool) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise OutboundError("the answer took too long")
        chunk = resp.read1(min(8192, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    if truncate:
        return b"".join(chunks)[:limit]
    raise OutboundError(f"the answer is larger than {limit} bytes")


def _reason(exc: Exception) -> str:
    """A short reason: the exception's type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
