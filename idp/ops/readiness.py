"""What ``idp config check`` refuses in production beyond what start-up refuses.

Start-up (``load_settings``) already refuses, in ``env = "production"``, what is unsafe
in any deployment: the development secret key and encryption keys, a plain-http issuer,
metrics without a token. These checks add what is unfit to serve real users, but may
be chosen on purpose for a closed trial, so start-up only warns about them (once per
process start) and ``idp config check``, run by the deployment before a roll-out, fails:

* SQLite: one file on one host; instances cannot share it, and it has no online backup
  a deployment would rely on;
* the in-memory store: sessions, limits and one-time codes in one process, lost at a
  restart;
* console delivery: emails, text messages and voice calls written to a local file
  instead of reaching users (text and voice only while those factors are allowed).
"""

from __future__ import annotations

from ..config import Settings


def production_problems(settings: Settings) -> list[str]:
    """One line per setting unfit for production (empty outside production)."""
    if not settings.is_production:
        return []
    problems = []
    if settings.database.url.startswith("sqlite"):
        problems.append("[database] url is SQLite: use PostgreSQL in production "
                        "(postgresql+psycopg://user@host/db)")  # fmt: skip
    if settings.store.backend == "memory":
        problems.append("[store] backend is 'memory': use 'redis' in production (sessions "
                        "and limits are lost at every restart and never shared)")  # fmt: skip
    d = settings.delivery
    allowed = set(settings.mfa.allowed_factors)
    channels = [("email_backend", d.email_backend, True),
                ("sms_backend", d.sms_backend, "sms" in allowed),
                ("voice_backend", d.voice_backend, "voice" in allowed)]  # fmt: skip
    for key, backend, used in channels:
        if used and backend == "console":
            problems.append(f"[delivery] {key} is 'console': messages go to "
                            f"{d.outbox}, not to users")  # fmt: skip
    return problems
