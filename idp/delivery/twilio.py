"""SMS and voice through an HTTP gateway speaking the Twilio REST API shape.

- Text: ``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json`` with the form fields
  ``To``, ``From``, ``Body``;
- Call: ``POST {base_url}/2010-04-01/Accounts/{sid}/Calls.json`` with ``To``, ``From``,
  ``Twiml`` (the call reads the TwiML document);

both with HTTP basic authentication ``account_sid:auth_token`` (RFC 7617). A 2xx answer
is success. Retries are bounded and happen only when the request surely did not
reach the gateway or the gateway failed (connection errors and 5xx answers); a 4xx
answer (bad number, unverified sender, wrong credentials) is final, and a read
timeout is not retried either, because the gateway may already have sent the message
and a retry could deliver two different codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from xml.sax.saxutils import escape

import requests

from .base import DeliveryError, TextMessage, VoiceMessage

log = logging.getLogger("idp.delivery")

API_VERSION = "2010-04-01"


def say_code_twiml(
    intro: str,
    code: str,
    outro: str,
    *,
    again: str = "Again, your code is",
    language: str | None = None,
) -> str:
    """TwiML that reads *code* digit by digit, twice (one ``<Say>`` each time).

    Digits are separated by ", " so text-to-speech reads "4, 0, 7" rather than
    "four hundred seven". *language* (a BCP 47 tag such as ``es-US``, Twilio's ``<Say
    language>``) is the voice's language; the account's default voice without it.
    """
    digits = ", ".join(code)
    say = f'<Say language="{escape(language)}">' if language else "<Say>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<Response>"
        f"{say}{escape(intro)} {digits}.</Say>"
        '<Pause length="1"/>'
        f"{say}{escape(again)} {digits}.</Say>"
        f"{say}{escape(outro)}</Say>"
        "</Response>"
    )


class TwilioClient:
    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout: float = 10,
        retries: int = 2,
        backoff: float = 0.2,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.sender = sender
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()

    def __repr__(self) -> str:  # never show the token
        return f"TwilioClient({self.base_url}, {self.account_sid})"

    def url(self, resource: str) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    def post(self, resource: str, fields: Mapping[str, str]) -> None:
        """POST the form to *resource*; raise :class:`DeliveryError` unless a 2xx answers."""
        url = self.url(resource)
        last: DeliveryError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * attempt)
            try:
                resp = self.session.post(
                    url,
                    data=dict(fields),
                    auth=(self.account_sid, self._auth_token),
                    timeout=self.timeout,
                    headers={"Accept": "application/json"},
                )
            except requests.ConnectionError as exc:
                # Includes ConnectTimeout (never a ReadTimeout): nothing reached the gateway.
                last = DeliveryError(f"{resource}: cannot connect", reason="unavailable")
                log.warning("gateway %s attempt %d: %s", resource, attempt + 1, exc)
                continue
            except requests.Timeout as exc:
                raise DeliveryError(f"{resource} timed out", reason="timeout") from exc
            except requests.RequestException as exc:
                raise DeliveryError(f"{resource}: {type(exc).__name__}") from exc
            if 200 <= resp.status_code < 300:
                return
            if 500 <= resp.status_code < 600:
                last = DeliveryError(f"{resource}: gateway error {resp.status_code}")
                log.warning("gateway %s attempt %d: %d", resource, attempt + 1, resp.status_code)
                continue
            raise DeliveryError(
                f"{resource}: refused with {resp.status_code} {_error_code(resp)}".rstrip(),
                reason="refused",
            )
        assert last is not None
        raise last


def _error_code(resp: requests.Response) -> str:
    """Twilio's numeric error code from a JSON error body, if any (safe to log)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    code = body.get("code") if isinstance(body, dict) else None
    return f"(code {code})" if isinstance(code, int) else ""


class TwilioSmsSender:
    def __init__(self, client: TwilioClient):
        self.client = client

    def send(self, message: TextMessage) -> None:
        self.client.post(
            "Messages", {"To": message.to, "From": self.client.sender, "Body": message.text}
        )
        log.info("sms to %s via gateway (%s)", message.to, message.purpose)


class TwilioVoiceSender:
    def __init__(self, client: TwilioClient):
        self.client = client

    def send(self, message: VoiceMessage) -> None:
        self.client.post(
            "Calls", {"To": message.to, "From": self.client.sender, "Twiml": message.twiml}
        )
        log.info("voice call to %s via gateway (%s)", message.to, message.purpose)
