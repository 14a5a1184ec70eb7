"""Second factors: the contract (:mod:`.base`), the service every verification walks
(:mod:`.service`), the sign-in policy (:mod:`.policy`), the pages they share
(:mod:`.pages`, :mod:`.views`), and one package per factor type: :mod:`.totp`,
:mod:`.webauthn`, :mod:`.push`, :mod:`.codes` (email, text message, voice call) and
:mod:`.recovery`. docs/ARCHITECTURE.md shows how to add one."""

from __future__ import annotations

from flask import Flask


def init_mfa(app: Flask) -> None:
    """Install the MFA service and register the second-factor pages."""
    from .push.api import bp as push_api_bp
    from .push.views import bp as push_pages_bp
    from .recovery import views as _recovery_pages  # noqa: F401  (routes on the mfa pages)
    from .service import MFAService
    from .views import bp
    from .webauthn import views as _webauthn_pages  # noqa: F401  (routes on the mfa pages)

    app.extensions["idp.mfa"] = MFAService(app.extensions["idp"])
    app.register_blueprint(bp)
    # The companion app's API authenticates by device signature (no cookies, no CSRF).
    app.register_blueprint(push_api_bp)
    app.register_blueprint(push_pages_bp)
