"""Security notifications to the user's email (factor added or removed, lockouts, ...).

A notification that cannot be delivered is logged and audited but never undoes the
change it reports: the change is already committed and audited.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template
from jinja2 import TemplateNotFound

from . import audit
from .delivery import DeliveryError, EmailMessage
from .models import User
from .services import services

log = logging.getLogger("idp.notify")

SUBJECTS = {
    "factor_added": "A sign-in method was added to your account",
    "factor_removed": "A sign-in method was removed from your account",
    "mfa_locked": "Sign-in paused after failed verification attempts",
    "login_locked": "Wrong passwords were typed for your account",
    "mfa_reset": "Your sign-in methods were reset by the help desk",
    "recovery_codes_new": "New recovery codes were created for your account",
    "recovery_code_used": "A recovery code was used to sign in",
    "possible_clone": "A security key could not be trusted",
    "verify_email": "Confirm your email address",
    "register_existing": "Someone tried to create an account with your email address",
    "password_reset": "Reset your password",
    "password_changed": "Your password was changed",
    "email_change_verify": "Confirm your new email address",
    "email_change_taken": "Someone tried to use this email address",
    "email_changed": "Your email address was changed",
    "push_reported": "A sign-in request you reported was blocked",
}


def html_version(event: str, text: str, *, subject: str, **context: Any) -> str:
    """The HTML alternative of a notification (RFC 2046 5.1.4): ``email/<event>.html``
    when it exists, else the plain text laid out in paragraphs (autoescaped)."""
    svc = services()
    ui = svc.settings.ui
    common = {"service_name": ui.service_name, "help_phone": ui.help_phone,
              "help_hours": ui.help_hours, "subject": subject}  # fmt: skip
    try:
        return render_template(f"email/{event}.html", **common, **context)
    except TemplateNotFound:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        return render_template("email/_text.html", paragraphs=paragraphs, **common)


def notify(user: User, event: str, **context: Any) -> bool:
    """Email *user* about *event*; returns False (and audits) when delivery failed."""
    svc = services()
    text = render_template(
        f"email/{event}.txt", user=user, service_name=svc.settings.ui.service_name,
        help_phone=svc.settings.ui.help_phone, help_hours=svc.settings.ui.help_hours,
        **context,
    )  # fmt: skip
    subject = f"{svc.settings.ui.service_name}: {SUBJECTS[event]}"
    message = EmailMessage(
        to=user.email,
        subject=subject,
        text=text,
        purpose=f"notify.{event}",
        html=html_version(event, text, subject=subject, user=user, **context),
    )
    try:
        svc.email.send(message)
    except DeliveryError as exc:
        log.error("notification %s to user %s failed: %s", event, user.id, exc)
        audit.record_now("notify.failed", outcome="failure", user_id=user.id, kind=event)
        return False
    return True
