"""The provider's push API (``/push/v1``) as seen from the app.

Every call is signed with the device key (:mod:`clients.verify.device`). The HTTP layer
is a small callable so tests can run the app against an in-process provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import device
from .state import Account

# (method, url, headers, timeout) -> (status, JSON body)
Transport = Callable[[str, str, dict[str, str], float], tuple[int, dict[str, Any]]]

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class AppError(Exception):
    """The provider refused the request (``status``, ``code``) or could not be reached."""

    def __init__(self, status: int, code: str, description: str):
        super().__init__(f"{description} ({code}, HTTP {status})" if status else description)
        self.status = status
        self.code = code
        self.description = description


def requests_transport(method: str, url: str, headers: dict[str, str], timeout: float):
    import requests

    try:
        resp = requests.request(method, url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise AppError(0, "unreachable", f"cannot reach {url}: {exc}") from exc
    try:
        body = resp.json()
    except ValueError:
        body = {"error": "bad_response", "error_description": resp.text[:200]}
    return resp.status_code, body if isinstance(body, dict) else {}


def parse_enroll_uri(uri: str) -> tuple[str, str]:
    """``idp-verify://enroll?issuer=...&token=...`` -> ``(issuer, token)``. Plain
    ``http`` issuers are accepted only on this machine (development and tests)."""
    parts = urlsplit(uri.strip())
    if parts.scheme != "idp-verify" or parts.netloc != "enroll":
        raise AppError(0, "bad_uri", "not an idp-verify enrollment link (idp-verify://enroll?...)")
    query = parse_qs(parts.query)
    issuer = (query.get("issuer") or [""])[0].rstrip("/")
    token = (query.get("token") or [""])[0]
    target = urlsplit(issuer)
    if not token or target.scheme not in ("https", "http") or not target.hostname:
        raise AppError(0, "bad_uri", "the link lacks the provider address or the token")
    if target.scheme == "http" and target.hostname not in LOCAL_HOSTS:
        raise AppError(0, "bad_uri", f"refusing plain http for {target.hostname}; use https")
    return issuer, token


def _check(status: int, body: dict[str, Any]) -> dict[str, Any]:
    if 200 <= status < 300:
        return body
    raise AppError(
        status, str(body.get("error", "error")), str(body.get("error_description", "refused"))
    )


def enroll(uri: str, *, name: str, alg: str = "ES256", transport: Transport | None = None):
    """Create a key pair, register it with the enrollment link, return the account."""
    send = transport or requests_transport
    issuer, token = parse_enroll_uri(uri)
    key = device.generate(alg)
    url = f"{issuer}/push/v1/enroll"
    jws = device.sign(
        key,
        {"jwk": device.public_jwk(key)},
        device.request_claims("POST", url, token=token, name=name),
    )
    body = _check(*send("POST", url, {"Authorization": f"Device {jws}"}, 15.0))
    return Account(
        issuer=body.get("issuer", issuer),
        device_id=body["device_id"],
        alg=device.algorithm_of(key),
        private_key=device.to_pem(key),
        account=body.get("account", ""),
        service_name=body.get("service_name", ""),
        label=body.get("label", name),
        totp=body.get("totp") or {},
        added=int(time.time()),
    )


class Client:
    """Signed calls for one enrolled account."""

    def __init__(self, account: Account, transport: Transport | None = None):
        self.account = account
        self.key = device.from_pem(account.private_key)
        self.send = transport or requests_transport

    def _call(self, method: str, path: str, timeout: float = 15.0, **claims: Any):
        url = f"{self.account.issuer}{path}"
        jws = device.sign(
            self.key,
            {"kid": self.account.device_id},
            device.request_claims(method, url, sub=self.account.device_id, **claims),
        )
        return _check(*self.send(method, url, {"Authorization": f"Device {jws}"}, timeout))

    def pending(self, wait: int = 0) -> list[dict[str, Any]]:
        body = self._call("GET", "/push/v1/challenges", timeout=wait + 15.0, wait=wait)
        return list(body.get("challenges", []))

    def wait_for_challenge(self, total: float) -> list[dict[str, Any]]:
        """Long-poll until a challenge is pending or *total* seconds have passed."""
        deadline = time.monotonic() + total
        while True:
            remaining = int(deadline - time.monotonic())
            found = self.pending(wait=max(0, min(remaining, 25)))
            if found or time.monotonic() >= deadline:
                return found

    def approve(self, challenge_id: str, number: int) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/push/v1/challenges/{challenge_id}",
            challenge=challenge_id,
            action="approve",
            number=number,
        )

    def deny(self, challenge_id: str, *, report: bool = False) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/push/v1/challenges/{challenge_id}",
            challenge=challenge_id,
            action="deny",
            report=report,
        )

    def remove(self) -> dict[str, Any]:
        return self._call("DELETE", "/push/v1/device")
