"""Pending authorization requests: bound to the browser, claimed once."""

from __future__ import annotations

import threading

from idp.auth.transaction import TransactionStore
from idp.store import MemoryStore


def test_transaction_is_bound_to_the_browser_that_started_it():
    txns = TransactionStore(MemoryStore())
    txn = txns.create({"client_id": "c"}, "browser-one", {"max_age": 5})
    assert txns.get(txn.id, "browser-one").policy == {"max_age": 5}
    assert txns.get(txn.id, "browser-two") is None
    assert txns.get("unknown", "browser-one") is None


def test_a_transaction_is_claimed_exactly_once_under_concurrency():
    txns = TransactionStore(MemoryStore())
    txn = txns.create({"client_id": "c"}, "browser")
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(txns.claim(txn))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert txns.get(txn.id, "browser") is None
