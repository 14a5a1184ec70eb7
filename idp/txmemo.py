"""Per-transaction memo for rows a request reads several times.

A sign-in page asks for the same rows more than once per request (the policy, the
default factor, the offers and the verification each load the user's factors). A
:func:`memo` keeps such a result for the rest of the current database transaction, and
forgets it as soon as it could differ from what the database would answer:

* the transaction ends (commit or rollback: a new one starts with an empty memo);
* a savepoint is rolled back, or the session flushes changes;
* an INSERT, UPDATE or DELETE statement is executed through the session;
* an object of a watched class is new, changed or deleted in the session (not yet
  flushed), in which case the memo is bypassed and cleared.

The memo returns the same ORM instances the query would (the session's identity map
guarantees one instance per row), so callers see exactly what they saw before.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

T = TypeVar("T")
_KEY = "idp.txmemo"


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_KEY, None)


def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _forget(state.session)


def install() -> None:
    """Register the session hooks that invalidate memos (idempotent)."""
    if not event.contains(Session, "do_orm_execute", _on_execute):
        event.listen(Session, "do_orm_execute", _on_execute)
        event.listen(Session, "after_soft_rollback", _forget)
        event.listen(Session, "after_commit", _forget)
        event.listen(Session, "after_flush", _forget)


def memo(session: Session, key: tuple, watch: type, load: Callable[[], list[T]]) -> list[T]:
    """``load()``, remembered under *key* for the rest of the current transaction while
    no *watch* object is pending in *session*. Returns a new list each time."""
    install()
    if any(isinstance(o, watch) for o in chain(session.new, session.dirty, session.deleted)):
        _forget(session)
        return list(load())
    slot = session.info.get(_KEY)
    txn = session.get_transaction()
    if slot is not None and txn is not None and slot[0] is txn and key in slot[1]:
        return list(slot[1][key])
    rows = list(load())
    txn = session.get_transaction()  # loading began the transaction if none was open
    if txn is not None:
        if slot is None or slot[0] is not txn:
            slot = (txn, {})
            session.info[_KEY] = slot
        slot[1][key] = rows
    return list(rows)
