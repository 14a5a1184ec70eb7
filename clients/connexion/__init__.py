"""Connexion: the sample relying party of the provider (see ``README.md`` here).

A small Flask application for the DMEPOS Competitive Bidding Program's secure portal:
sign-in with OpenID Connect (Authlib's Flask client), step-up to multi-factor
authentication before the Form C semi-annual report, an API protected by the
provider's RFC 9068 access tokens that answers RFC 9470 step-up challenges, and
RP-initiated logout::

    from clients.connexion import create_app

    app = create_app({"CONNEXION_ISSUER": "https://idp.example.gov"})

or ``python -m clients.connexion``.
"""

from .app import create_app, main

__all__ = ["create_app", "main"]
