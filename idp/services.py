"""The services one application instance uses, built once in ``create_app``.

Views reach them through :func:`services`; tests build the app with their own store,
clock or key ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from .auth.devices import DeviceTrust
from .auth.session import SessionManager
from .auth.transaction import TransactionStore
from .config import Settings
from .delivery import EmailSender, SmsSender, VoiceSender
from .delivery.build import build_email_sender, build_sms_sender, build_voice_sender
from .keys import KeyRing
from .oidc.backchannel import BackchannelLogout
from .security.crypto import SecretBox
from .security.csrf import CSRFProtect
from .security.passwords import PasswordHasher
from .security.ratelimit import Limit, RateLimiter
from .store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    keyring: KeyRing | None
    sessions: SessionManager
    transactions: TransactionStore
    passwords: PasswordHasher
    csrf: CSRFProtect
    secrets: SecretBox
    login_ip: RateLimiter
    login_failures_ip: RateLimiter
    login_failures_account_ip: RateLimiter
    devices: DeviceTrust
    email: EmailSender
    sms: SmsSender
    voice: VoiceSender
    mfa_attempts: RateLimiter
    #: Failed sign-ins with a passkey alone, per credential (idp.auth.passkey).
    passkey_failures: RateLimiter
    #: Passkey request options handed out, per IP (each is a challenge in the store).
    passkey_options: RateLimiter
    #: OpenID Connect Back-Channel Logout (idp.oidc.backchannel); set by build_services.
    backchannel: BackchannelLogout = field(init=False)

    @property
    def keys(self) -> KeyRing:
        """The signing key ring, loaded on first use (commands like ``idp keys generate``
        build the app before any key exists)."""
        if self.keyring is None:
            self.keyring = load_keyring(self.settings)
        return self.keyring


def load_keyring(settings: Settings) -> KeyRing:
    t = settings.tokens
    # A retired key stays published until every token it signed has expired.
    return KeyRing.load(settings.keys.directory, retire_for=max(t.access_token_ttl, t.id_token_ttl))


def build_services(settings: Settings, store: Store, keys: KeyRing | None) -> Services:
    login = settings.login
    svc = Services(
        settings=settings,
        store=store,
        keyring=keys,
        sessions=SessionManager(
            store,
            idle_timeout=settings.session.idle_timeout,
            absolute_timeout=settings.session.absolute_timeout,
        ),
        transactions=TransactionStore(store),
        passwords=PasswordHasher(
            memory_cost=settings.password.memory_cost,
            time_cost=settings.password.time_cost,
            parallelism=settings.password.parallelism,
        ),
        csrf=CSRFProtect(settings.secret_key),
        secrets=SecretBox(
            settings.security.encryption_keys, settings.security.active_encryption_key
        ),
        login_ip=RateLimiter(store, Limit("login.ip", login.per_ip_per_minute, 60)),
        login_failures_ip=RateLimiter(
            store, Limit("login.failures_ip", login.failures_per_ip_per_minute, 60)
        ),
        login_failures_account_ip=RateLimiter(
            store, Limit("login.failures_account_ip", login.failures_per_account_ip_per_minute, 60)
        ),
        devices=DeviceTrust(
            settings.secret_key,
            store,
            lifetime=login.device_trust_days * 86400,
            failures=login.max_consecutive_failures,
            window=login.lockout_seconds,
        ),
        email=build_email_sender(settings),
        sms=build_sms_sender(settings),
        voice=build_voice_sender(settings),
        # Second-factor guesses per user per minute, on top of the consecutive-failure lock.
        mfa_attempts=RateLimiter(store, Limit("mfa.user", 10, 60)),
        # A credential's failures pause its passkey sign-in like a browser's wrong
        # passwords pause that browser (the same count and duration).
        passkey_failures=RateLimiter(
            store,
            Limit(
                "login.passkey_credential", login.max_consecutive_failures, login.lockout_seconds
            ),
        ),  # fmt: skip
        passkey_options=RateLimiter(
            store, Limit("login.passkey_options_ip", login.per_ip_per_minute, 60)
        ),
    )

    svc.backchannel = BackchannelLogout(store, settings, svc.sessions, lambda: svc.keys)

    def end_grants(user_id: int, sids: list[str]) -> None:
        # A session ended on purpose takes its session-bound refresh tokens with it, and
        # the applications that received tokens in it hear of it (back-channel logout).
        from .oidc.tokens import TokenService

        TokenService(svc).revoke_session_grants(user_id, sids)
        svc.backchannel.sessions_ended(sids)

    svc.sessions.on_end = end_grants
    return svc


def services() -> Services:
    """The current application's services."""
    return current_app.extensions["idp"]
