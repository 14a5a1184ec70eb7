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

from flask import g, has_request_context

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
        raw = json.dumps(vars(txn)).encode()
        self.store.set(f"txn:{txn.id}", raw, TRANSACTION_TTL)
        _remember(txn.id, raw)

    def get(self, txn_id: str | None, browser_id: str | None) -> Transaction | None:
        """The transaction *txn_id* if it belongs to the browser *browser_id*. Read from
        the store once per request: the page, its language and its header ask for it
        several times (each caller gets its own copy)."""
        if not txn_id or not browser_id or len(txn_id) > 64:
            return None
        memo = _request_memo()
        raw = memo.get(txn_id) if memo is not None else None
        if raw is None:
            raw = self.store.get(f"txn:{txn_id}")
            _remember(txn_id, raw)
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        txn = Transaction(**data)
        if not equal(txn.browser, hash_token(browser_id)):
            return None
        return txn

    def finish(self, txn: Transaction) -> None:
        self.store.delete(f"txn:{txn.id}")
        _remember(txn.id, None)

    def claim(self, txn: Transaction) -> bool:
        """End the transaction atomically; False when another request already did
        (so one authorization request yields at most one code). Always asks the store."""
        _remember(txn.id, None)
        return self.store.take(f"txn:{txn.id}") is not None


def _request_memo() -> dict[str, bytes | None] | None:
    """This request's transactions as last read or written (None outside a request)."""
    if not has_request_context():
        return None
    memo: dict[str, bytes | None] | None = g.get("_idp_txns")
    if memo is None:
        memo = g._idp_txns = {}
    return memo


def _remember(txn_id: str, raw: bytes | None) -> None:
    memo = _request_memo()
    if memo is not None:
        if raw is None:
            memo.pop(txn_id, None)  # gone, or not yet seen: the next read asks the store
        else:
            memo[txn_id] = raw
