"""Security notifications to the user's email (factor added or removed, lockouts, ...).

A notification that cannot be delivered is logged and audited but never undoes the
change it reports: the change is already committed and audited. It is written in the
account's language (:func:`idp.i18n.account_locale`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from jinja2 import TemplateNotFound

from . import audit
from .delivery import DeliveryError, EmailMessage
from .i18n import account_locale, help_hours
from .models import User
from .services import services

log = logging.getLogger("idp.notify")

SUBJECTS = {
    "factor_added": _l("A sign-in method was added to your account"),
    "factor_removed": _l("A sign-in method was removed from your account"),
    "mfa_locked": _l("Sign-in paused after failed verification attempts"),
    "login_locked": _l("Wrong passwords were typed for your account"),
    "mfa_reset": _l("Your sign-in methods were reset by the help desk"),
    "recovery_codes_new": _l("New recovery codes were created for your account"),
    "recovery_code_used": _l("A recovery code was used to sign in"),
    "possible_clone": _l("A security key could not be trusted"),
    "verify_email": _l("Confirm your email address"),
    "register_existing": _l("Someone tried to create an account with your email address"),
    "password_reset": _l("Reset your password"),
    "password_changed": _l("Your password was changed"),
    "email_change_verify": _l("Confirm your new email address"),
    "email_change_taken": _l("Someone tried to use this email address"),
    "email_changed": _l("Your email address was changed"),
    "push_reported": _l("A sign-in request you reported was blocked"),
}


def html_version(event: str, text: str, *, subject: str, **context: Any) -> str:
    """The HTML alternative of a notification (RFC 2046 5.1.4): ``email/<event>.html``
    when it exists, else the plain text laid out in paragraphs (autoescaped)."""
    svc = services()
    ui = svc.settings.ui
    common = {"service_name": ui.service_name, "help_phone": ui.help_phone,
              "help_hours": help_hours(ui), "subject": subject}  # fmt: skip
    try:
        return render_template(f"email/{event}.html", **common, **context)
    except TemplateNotFound:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        own_footer = render_template("email/_footer.txt", **common).split("\n\n")
        footer = [" ".join(p.split()) for p in own_footer if p.strip()]
        return render_template("email/_text.html", paragraphs=paragraphs, footer=footer,
                               **common)  # fmt: skip


def notify(user: User, event: str, **context: Any) -> bool:
    """Email *user* about *event* in the account's language; returns False (and audits)
    when delivery failed."""
    svc = services()
    ui = svc.settings.ui
    with force_locale(account_locale(user)):
        text = render_template(
            f"email/{event}.txt", user=user, service_name=ui.service_name,
            help_phone=ui.help_phone, help_hours=help_hours(ui), **context,
        )  # fmt: skip
        subject = f"{ui.service_name}: {SUBJECTS[event]}"
        html = html_version(event, text, subject=subject, user=user, **context)
    message = EmailMessage(
        to=user.email,
        subject=subject,
        text=text,
        purpose=f"notify.{event}",
        html=html,
    )
    try:
        svc.email.send(message)
    except DeliveryError as exc:
        log.error("notification %s to user %s failed: %s", event, user.id, exc)
        audit.record_now("notify.failed", outcome="failure", user_id=user.id, kind=event)
        return False
    return True
