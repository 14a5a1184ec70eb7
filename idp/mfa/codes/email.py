"""Codes by email: satisfies ``urn:idp:acr:mfa`` but is not AAL2.

NIST SP 800-63B 5.1.3.1: email SHALL NOT be used for out-of-band authentication, so an
email code counts for the portal's MFA rule only (see ``idp.auth.assurance``). The
address may differ from the sign-in address. amr ``email`` is the project's own value
(RFC 8176 has none).
"""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...delivery import EmailMessage
from ...models import User
from ...security import email_address
from ..base import EnrollmentError
from .factor import CodeFactor
from .otp import Sent


def parse_email(raw: str) -> str:
    """A delivery address (NFKC, the domain in lower case; the local part keeps its
    case, which a mail server may honour), or raise :class:`EnrollmentError`."""
    text = email_address.normalize(raw, lower=False)
    if not email_address.is_valid(text):
        raise EnrollmentError(_l("Enter an email address like name@example.com."))
    local, domain = text.split("@")
    return f"{local}@{domain.lower()}"


def mask_email(address: str) -> str:
    """``a***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


class EmailFactor(CodeFactor):
    type = "email"
    display_name = _l("Email code")
    description = _l(
        "Get a 6-digit code by email. Works with any inbox, but it is the weakest option: "
        "some applications need a stronger one."
    )
    amr = ("email",)
    channel_noun = _l("an email")
    destination_label = _l("Email address")
    already_set_up = _l("That email address is already set up.")

    def parse_destination(self, raw: str) -> str:
        return parse_email(raw)

    def mask(self, destination: str) -> str:
        return mask_email(destination)

    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        """The code by email, in the language of the page that asked for it."""
        subject = _("%(service)s: your verification code",
                    service=self.svc.settings.ui.service_name)  # fmt: skip
        text = self.render("email/code.txt", sent, user=user)
        html = self.render("email/code.html", sent, user=user, subject=subject)
        self.svc.email.send(
            EmailMessage(
                to=destination, subject=subject, text=text, html=html, purpose="otp.email"
            )  # fmt: skip
        )
