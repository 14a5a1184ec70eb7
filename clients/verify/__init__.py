"""idp-verify: the companion authenticator app (push approval with number matching).

Run ``idp-verify --help`` (or ``python -m clients.verify --help``); see README.md.
"""
