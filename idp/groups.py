"""Groups of users, released to applications in the ``groups`` claim.

A group is a name (and a description) with members. Applications that are granted the
``groups`` scope receive the names of the user's groups as an array in the ID token and
at the userinfo endpoint (``groups``). The command line (``idp groups``) and the help
desk's user page (``/admin/users/<id>``) manage them through this module; every change
is audited (``group.created``, ``group.deleted``, ``group.member_added``,
``group.member_removed``).
"""

from __future__ import annotations

import re
from typing import Any

from . import audit
from .extensions import db
from .models import Group, GroupMember, User

# A name an application can match on: letters, digits and . _ - (no spaces, so that a
# name reads the same in a claim, a command line and a log line).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class GroupError(ValueError):
    """A group operation that cannot be done; the message says why in plain words."""


class GroupConflict(GroupError):
    """The group exists already, or the user is (or is not) a member already."""


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise GroupError(
            "A group name is 1 to 100 characters: letters, digits and . _ - (no spaces), "
            "starting with a letter or a digit."
        )
    return name


def find_group(name: str) -> Group | None:
    if not name or len(name) > 100:
        return None
    return db.session.execute(db.select(Group).filter_by(name=name.strip())).scalar_one_or_none()


def list_groups() -> list[Group]:
    return list(db.session.execute(db.select(Group).order_by(Group.name)).scalars())


def create_group(name: str, *, description: str = "", actor: str | None = None) -> Group:
    name = check_name(name)
    description = " ".join((description or "").split())
    if len(description) > 500:
        raise GroupError("The description must be at most 500 characters.")
    if find_group(name) is not None:
        raise GroupConflict(f"The group {name} already exists.")
    group = Group(name=name, description=description)
    db.session.add(group)
    db.session.flush()
    audit.record("group.created", actor=actor, group=name)
    db.session.commit()
    return group


def delete_group(group: Group, *, actor: str | None = None) -> int:
    """Delete a group and its memberships; returns how many members it had."""
    count = db.session.execute(
        db.delete(GroupMember).where(GroupMember.group_id == group.id)
    ).rowcount
    name = group.name
    db.session.delete(group)
    audit.record("group.deleted", actor=actor, group=name, members=count or 0)
    db.session.commit()
    return count or 0


def is_member(group: Group, user: User) -> bool:
    return db.session.get(GroupMember, (group.id, user.id)) is not None


def add_member(
    group: Group, user: User, *, actor: str | None = None, reason: str | None = None
) -> None:
    if is_member(group, user):
        raise GroupConflict(f"{user.email} is already in {group.name}.")
    db.session.add(GroupMember(group_id=group.id, user_id=user.id))
    audit.record("group.member_added", user_id=user.id, actor=actor, group=group.name,
                 reason=reason)  # fmt: skip
    db.session.commit()


def remove_member(
    group: Group, user: User, *, actor: str | None = None, reason: str | None = None
) -> None:
    row = db.session.get(GroupMember, (group.id, user.id))
    if row is None:
        raise GroupConflict(f"{user.email} is not in {group.name}.")
    db.session.delete(row)
    audit.record("group.member_removed", user_id=user.id, actor=actor, group=group.name,
                 reason=reason)  # fmt: skip
    db.session.commit()


def members(group: Group) -> list[User]:
    return list(
        db.session.execute(
            db.select(User)
            .join(GroupMember, GroupMember.user_id == User.id)
            .where(GroupMember.group_id == group.id)
            .order_by(User.email)
        ).scalars()
    )


def groups_of(user_id: int) -> list[Group]:
    return list(
        db.session.execute(
            db.select(Group)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user_id)
            .order_by(Group.name)
        ).scalars()
    )


def group_names(user_id: int) -> list[str]:
    """The ``groups`` claim: the names of the user's groups, sorted."""
    return list(
        db.session.execute(
            db.select(Group.name)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user_id)
            .order_by(Group.name)
        ).scalars()
    )


def describe_group(group: Group, *, with_members: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": group.name,
        "description": group.description,
        "created_at": group.created_at.isoformat() if group.created_at else None,
    }
    if with_members:
        out["members"] = [u.email for u in members(group)]
    else:
        out["members"] = db.session.execute(
            db.select(db.func.count()).where(GroupMember.group_id == group.id)
        ).scalar_one()
    return out
