"""Pending authorization requests, kept server-side while the user walks the sign-in steps.

A transaction is bound to the browser that started it (a hash of its ``idp_browser``
cookie), so a leaked transaction URL is useless in another browser.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..security.crypto import equal, hash_token
from ..store import Store

TRANSACTION_TTL = 1800

#: Steps of a transaction (:attr:`Transaction.done`) besides ``"login"`` (the password
#: step) and ``"mfa:<type>"``: a sign-in with a passkey alone, the passkey offer answered.
PASSKEY_DONE = "passkey_login"
PASSKEY_OFFERED = "passkey_offered"


@dataclass
class Transaction:
    id: str
    browser: str
    params: dict[str, str]
    created_at: int
    # Steps already completed inside this transaction (e.g. "login" for the password,
    # "passkey_login" for a passkey alone, "mfa:totp" for a factor that passed,
    # "mfa_postponed").
    done: list[str] = field(default_factory=list)
    # The parsed policy inputs of the request (acr, max_age, prompt, hinted sub), so
    # later steps can re-evaluate the policy without re-parsing the request.
    policy: dict[str, Any] = field(default_factory=dict)


class TransactionStore:
    def __init__(self, store: Store):
        self.store = store

    def create(
        self, params: dict[str, str], browser_id: str, policy: dict[str, Any] | None = None
    ) -> Transaction:
        txn = Transaction(
            id=secrets.token_urlsafe(24),
            browser=hash_token(browser_id),
            params=params,
            created_at=int(time.time()),
            policy=policy or {},
        )
        self.save(txn)
        return txn

    def save(self, txn: Transaction) -> None:
        self.store.set(f"txn:{txn.id}", json.dumps(vars(txn)).encode(), TRANSACTION_TTL)

    def get(self, txn_id: str | None, browser_id: str | None) -> Transaction | None:
        if not txn_id or not browser_id or len(txn_id) > 64:
            return None
        raw = self.store.get(f"txn:{txn_id}")
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        txn = Transaction(**data)
        if not equal(txn.browser, hash_token(browser_id)):
            return None
        return txn

    def finish(self, txn: Transaction) -> None:
        self.store.delete(f"txn:{txn.id}")

    def claim(self, txn: Transaction) -> bool:
        """End the transaction atomically; False when another request already did
        (so one authorization request yields at most one code)."""
        return self.store.take(f"txn:{txn.id}") is not None
