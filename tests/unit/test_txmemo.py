"""The per-transaction memo: one query per transaction, never a stale answer."""

from __future__ import annotations

import pytest
from sqlalchemy import ForeignKey, Integer, String, create_engine, delete, event, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from idp import txmemo


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    selects: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "items" in statement:
            selects.append(statement)

    with Session(engine) as s:
        s.add(Owner(id=1))
        s.add_all([Item(id=1, owner_id=1), Item(id=2, owner_id=1, status="revoked")])
        s.commit()
        s.info["selects"] = selects
        yield s


def active(s: Session) -> list[Item]:
    return txmemo.memo(
        s,
        ("items", 1),
        Item,
        lambda: list(s.execute(select(Item).filter_by(owner_id=1, status="active")).scalars()),
    )


def ids(items: list[Item]) -> list[int]:
    return sorted(i.id for i in items)


def test_second_read_in_a_transaction_does_not_query(session):
    first = active(session)
    second = active(session)
    assert ids(first) == ids(second) == [1]
    assert first[0] is second[0]
    assert len(session.info["selects"]) == 1


def test_the_caller_gets_its_own_list(session):
    active(session).clear()
    assert ids(active(session)) == [1]


def test_commit_and_rollback_start_over(session):
    active(session)
    session.commit()
    active(session)
    session.rollback()
    active(session)
    assert len(session.info["selects"]) == 3


def test_a_pending_change_is_seen(session):
    assert ids(active(session)) == [1]
    session.add(Item(id=3, owner_id=1))
    assert ids(active(session)) == [1, 3]  # autoflushed and queried, not remembered


def test_a_changed_status_is_seen_before_and_after_flush(session):
    item = active(session)[0]
    item.status = "revoked"
    assert active(session) == []
    session.flush()
    assert active(session) == []


def test_statements_through_the_session_invalidate(session):
    assert ids(active(session)) == [1]
    session.execute(insert(Item).values(id=4, owner_id=1, status="active"))
    assert ids(active(session)) == [1, 4]
    session.execute(delete(Item).where(Item.id == 4))
    assert ids(active(session)) == [1]


def test_a_rolled_back_savepoint_invalidates(session):
    active(session)
    with session.begin_nested() as sp:
        session.add(Item(id=5, owner_id=1))
        assert ids(active(session)) == [1, 5]
        sp.rollback()
    assert ids(active(session)) == [1]


def test_a_savepoint_rolled_back_after_a_remembered_read_invalidates(session):
    with session.begin_nested() as sp:
        session.add(Item(id=7, owner_id=1))
        session.flush()
        assert ids(active(session)) == [1, 7]  # remembered inside the savepoint
        sp.rollback()
    assert ids(active(session)) == [1]


def test_a_pending_delete_is_seen(session):
    item = active(session)[0]
    session.delete(item)
    assert active(session) == []


def test_another_session_has_its_own_memo(session):
    other = Session(session.get_bind())
    try:
        assert ids(active(session)) == [1]
        other.execute(insert(Item).values(id=6, owner_id=1, status="active"))
        other.commit()
        # Ours is a snapshot of our transaction (SQLite: serialised); a new transaction
        # of ours sees the other session's row.
        session.commit()
        assert ids(active(session)) == [1, 6]
    finally:
        other.close()


# -- the memo never answers differently from the query (a model test) --------------------

OPERATIONS = ("read", "add", "revoke", "activate", "delete", "flush", "commit", "rollback",
              "insert", "update", "savepoint_rollback", "savepoint_commit")  # fmt: skip


def _fresh(s: Session) -> list[int]:
    return sorted(s.execute(select(Item.id).filter_by(owner_id=1, status="active")).scalars().all())


def test_random_sequences_never_get_a_stale_answer():
    """Any sequence of reads, ORM changes, statements, flushes, commits, rollbacks and
    savepoints: every memo read equals a fresh query at that moment."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from sqlalchemy import update

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(OPERATIONS), max_size=25), st.integers(0, 10**6))
    def check(ops, seed):
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        next_id = [10]
        with Session(engine) as s:
            s.add(Owner(id=1))
            s.add_all([Item(id=1, owner_id=1), Item(id=2, owner_id=1, status="revoked")])
            s.commit()
            savepoint = None
            for n, op in enumerate(ops):
                rows = list(s.execute(select(Item).filter_by(owner_id=1)).scalars())
                pick = rows[(seed + n) % len(rows)] if rows else None
                if op == "read":
                    assert ids(active(s)) == _fresh(s), ops[: n + 1]
                elif op == "add":
                    next_id[0] += 1
                    s.add(Item(id=next_id[0], owner_id=1))
                elif op in ("revoke", "activate") and pick is not None:
                    pick.status = "revoked" if op == "revoke" else "active"
                elif op == "delete" and pick is not None:
                    s.delete(pick)
                elif op == "flush":
                    s.flush()
                elif op == "commit":
                    s.commit()
                    savepoint = None
                elif op == "rollback":
                    s.rollback()
                    savepoint = None
                elif op == "insert":
                    next_id[0] += 1
                    s.execute(insert(Item).values(id=next_id[0], owner_id=1, status="active"))
                elif op == "update" and pick is not None:
                    s.execute(update(Item).where(Item.id == pick.id).values(status="revoked"))
                elif op == "savepoint_rollback":
                    if savepoint is None:
                        savepoint = s.begin_nested()
                    else:
                        savepoint.rollback()
                        savepoint = None
                elif op == "savepoint_commit":
                    if savepoint is None:
                        savepoint = s.begin_nested()
                    else:
                        savepoint.commit()
                        savepoint = None
            assert ids(active(s)) == _fresh(s), ops

    check()
