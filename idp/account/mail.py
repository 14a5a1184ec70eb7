"""Account emails that go to an address other than the user's current one, or to no
user at all (a verification link to a new address, a notice to the old address, a
"someone tried to register with your address" notice).

Same templates, subjects and failure handling as :func:`idp.notify.notify`: a message
that cannot be delivered is logged and audited, never raised to the page.

:func:`send_after_response` sends after the response has gone out, for pages whose
answer must not depend on whether an email was sent: with a synchronous SMTP relay, a
page that emails known addresses only would answer them a relay round trip later than
unknown ones, telling anyone with a stopwatch which addresses have accounts. The OWASP
Forgot Password Cheat Sheet asks for exactly this: "ensure that responses return in a
consistent amount of time ... by using asynchronous calls or by making sure that the
same logic is followed" (see also OWASP WSTG-IDNT-04, account enumeration).

A message to an account is in the account's language, else in the language of the
page that sent it (:func:`idp.i18n.account_locale`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, render_template, request
from flask_babel import force_locale

from .. import audit
from ..delivery import DeliveryError, EmailMessage
from ..extensions import db
from ..i18n import account_locale, help_hours, page_locale
from ..models import User
from ..notify import SUBJECTS
from ..services import services

log = logging.getLogger("idp.account")


def send(
    to: str, event: str, *, user: User | None = None, page_lang: str | None = None,
    **context: Any,
) -> bool:  # fmt: skip
    """Email *to* with ``email/<event>.txt``; False (audited) when delivery failed.
    *page_lang* is the language of the page that asked for it, when that page is gone."""
    svc = services()
    ui = svc.settings.ui
    with force_locale(account_locale(user, page_lang)):
        text = render_template(
            f"email/{event}.txt", user=user, service_name=ui.service_name,
            help_phone=ui.help_phone, help_hours=help_hours(ui), **context,
        )  # fmt: skip
        subject = f"{ui.service_name}: {SUBJECTS[event]}"
    message = EmailMessage(
        to=to,
        subject=subject,
        text=text,
        purpose=f"account.{event}",
    )
    try:
        svc.email.send(message)
    except DeliveryError as exc:
        log.error("account email %s failed: %s", event, exc)
        audit.record_now(
            "notify.failed", outcome="failure", user_id=user.id if user else None, kind=event
        )
        return False
    return True


def send_after_response(
    response: Response,
    to: str | None,
    event: str,
    *,
    user_id: int | None = None,
    **context: Any,
) -> Response:
    """Send :func:`send`'s message to *to* once *response* has been sent; return it.

    The message is rendered and sent from the response's close callback (Werkzeug
    ``Response.call_on_close``: the WSGI server calls it after writing the body, PEP
    3333), so nobody waits for the mail relay and the answer takes the same time
    whether or not a message goes out. Call it for every outcome, with ``to=None``
    where nothing is to be sent, so every caller takes the same path up to the
    response. *user_id* is the recipient account (loaded again in the callback, as the
    request's database session is gone by then); *context* goes to the template as
    the caller computed it (the link included).

    Should the server never close the response, a timer sends the message
    :data:`CLOSE_FALLBACK_SECONDS` later; it is sent once either way.

    The callback runs in a request context rebuilt from this request (same client
    address and request id, so the ``notify.failed`` audit event and log lines of a
    failed delivery carry them). Nothing raised there reaches the server: the response
    is already out, so failures are logged (and, for delivery, audited by
    :func:`send`).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    environ = dict(request.environ)
    request_id = g.get("request_id")
    lang = page_locale()  # the page's language, read while its request is whole

    def deliver() -> None:
        if to is None:
            return
        with app.request_context(environ):
            g.request_id = request_id
            try:
                user = db.session.get(User, user_id) if user_id is not None else None
                send(to, event, user=user, page_lang=lang, **context)
            except Exception:  # noqa: BLE001 - after the response: log, never raise
                log.exception("account email %s could not be sent after the response", event)

    once = _once(deliver)
    response.call_on_close(once)
    # A server that never closes the response (Werkzeug's development server skips
    # close() when the browser resets the connection) must not lose the message: the
    # timer sends it a moment later, and whichever comes first sends it, once.
    timer = threading.Timer(CLOSE_FALLBACK_SECONDS, once)
    timer.daemon = True
    timer.start()
    return response


#: Seconds after which a message waiting for its response to close is sent anyway.
CLOSE_FALLBACK_SECONDS = 3.0


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """*action*, callable any number of times from any thread, run the first time only."""
    lock = threading.Lock()
    done = False

    def run() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        action()

    return run
