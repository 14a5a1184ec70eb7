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
