"""HTTP transports for the mock relying party.

A transport sends one request and returns one :class:`Response`. It never follows
redirects (the caller decides what to do with a ``Location``) and it keeps cookies
for as long as the transport instance lives, like a single browser profile would.

Two implementations are provided:

* :class:`HTTPTransport` talks real HTTP through a :class:`requests.Session`.
* :class:`FlaskTransport` drives a :class:`flask.testing.FlaskClient` in-process,
  so no server is needed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

__all__ = [
    "FlaskTransport",
    "HTTPTransport",
    "Headers",
    "Response",
    "Transport",
    "basic_auth_header",
]

FormData = Mapping[str, Any] | Iterable[tuple[str, Any]] | str | bytes


class Headers(MutableMapping[str, str]):
    """A small case-insensitive header mapping that remembers the original spelling."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None):
        self._store: dict[str, tuple[str, str]] = {}
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            lower = key.lower()
            if lower in self._store:
                # Repeated headers (e.g. Set-Cookie) are joined as HTTP allows.
                value = f"{self._store[lower][1]}, {value}"
            self._store[lower] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class Response:
    """A transport-independent HTTP response."""

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        body: bytes,
        url: str,
    ):
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.url = url

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` when absent)."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str:
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        if "charset=" in self.headers.get("Content-Type", "").lower():
            return json.loads(self.text)
        return json.loads(self.body)

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400 and "Location" in self.headers

    @property
    def location(self) -> str | None:
        """The ``Location`` header resolved against the request URL, or ``None``."""
        loc = self.headers.get("Location")
        if loc is None:
            return None
        return urljoin(self.url, loc)

    def __repr__(self) -> str:
        extra = f" -> {self.location}" if self.is_redirect else ""
        return f"<Response {self.status} {self.url}{extra}>"


@runtime_checkable
class Transport(Protocol):
    """Sends one HTTP request. Never follows redirects; keeps cookies per instance.

    ``params`` are added to the URL's query string, ``data`` is sent as an
    ``application/x-www-form-urlencoded`` body (a mapping or list of pairs; ``str``
    and ``bytes`` are sent verbatim), ``auth`` is a ``(user, password)`` pair sent
    as HTTP Basic exactly as given (the caller does any RFC 6749 encoding).
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: FormData | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response: ...


def basic_auth_header(user: str, password: str) -> str:
    """``Basic base64(user ":" password)`` using UTF-8, with no further encoding."""
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _pairs(data: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    items = data.items() if isinstance(data, Mapping) else data
    return [(str(k), "" if v is None else str(v)) for k, v in items]


def _encode_body(data: FormData | None, headers: MutableMapping[str, str]) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return urlencode(_pairs(data)).encode("ascii")


def _merge_query(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [
        (k, str(v)) for k, v in params.items() if v is not None
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


class HTTPTransport:
    """Real HTTP through ``requests``. Cookies live in the session."""

    def __init__(self, session: Any | None = None, timeout: float = 10):
        if session is None:
            import requests

            session = requests.Session()
        self.session = session
        self.timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: FormData | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        hdrs = Headers(headers or {})
        if auth is not None:
            hdrs["Authorization"] = basic_auth_header(*auth)
        body = _encode_body(data, hdrs)
        full_url = _merge_query(url, params)
        resp = self.session.request(
            method.upper(),
            full_url,
            data=body,
            headers=dict(hdrs.items()),
            allow_redirects=False,
            timeout=self.timeout,
        )
        return Response(resp.status_code, resp.headers.items(), resp.content, resp.url)


class FlaskTransport:
    """In-process transport over ``app.test_client()``.

    Absolute URLs are split into ``base_url`` (scheme and host, so cookies and
    ``url_for(..., _external=True)`` see the right host) and path plus query. The
    test client keeps cookies, so they persist across requests.
    """

    def __init__(self, test_client: Any):
        self.client = test_client

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: FormData | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        hdrs = Headers(headers or {})
        if auth is not None:
            hdrs["Authorization"] = basic_auth_header(*auth)
        body = _encode_body(data, hdrs)
        full_url = _merge_query(url, params)
        parts = urlsplit(full_url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"FlaskTransport needs an absolute URL, got {url!r}")
        base_url = f"{parts.scheme}://{parts.netloc}"
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "base_url": base_url,
            "query_string": parts.query,
            "headers": list(hdrs.items()),
            "follow_redirects": False,
        }
        if body is not None:
            kwargs["data"] = body
            if "Content-Type" in hdrs:
                kwargs["content_type"] = hdrs["Content-Type"]
        resp = self.client.open(parts.path or "/", **kwargs)
        try:
            return Response(resp.status_code, list(resp.headers.items()), resp.get_data(), full_url)
        finally:
            resp.close()
