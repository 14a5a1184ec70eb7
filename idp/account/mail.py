"""Account emails that go to an address other than the user's current one, or to no
user at all (a verification link to a new address, a notice to the old address, a
"someone tried to register with your address" notice).

Same templates, subjects and failure handling as :func:`idp.notify.notify`: a message
that cannot be delivered is logged and audited, never raised to the page.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template

from .. import audit
from ..delivery import DeliveryError, EmailMessage
from ..models import User
from ..notify import SUBJECTS
from ..services import services

log = logging.getLogger("idp.account")


def send(to: str, event: str, *, user: User | None = None, **context: Any) -> bool:
    """Email *to* with ``email/<event>.txt``; False (audited) when delivery failed."""
    svc = services()
    ui = svc.settings.ui
    text = render_template(
        f"email/{event}.txt", user=user, service_name=ui.service_name,
        help_phone=ui.help_phone, help_hours=ui.help_hours, **context,
    )  # fmt: skip
    message = EmailMessage(
        to=to,
        subject=f"{ui.service_name}: {SUBJECTS[event]}",
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
