"""Administration: client registration, the help desk, the audit trail and the MFA
adoption dashboard under ``/admin`` (see ``docs/ADMIN.md``)."""

from __future__ import annotations

from flask import Flask


def init_admin(app: Flask) -> None:
    """Register the admin blueprint and let the sign-in page continue to ``/admin``."""
    from ..auth.views import NEXT_PAGES
    from . import audit_views, clients, dashboard, resources, users  # noqa: F401  (routes)
    from .views import bp

    # The sign-in page continues only to pages it knows by name (never a URL).
    NEXT_PAGES.setdefault("admin", "admin.index")
    app.register_blueprint(bp)
