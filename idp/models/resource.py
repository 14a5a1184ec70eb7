"""API resources (RFC 8707 resource indicators) with their scopes.

A resource is an API identified by an absolute URI; an access token requested for it
carries that URI as ``aud`` (RFC 9068 3) and only the resource's scopes the client is
allowed. ``client_id`` names the client that *is* the resource server: it may
introspect tokens issued for the resource (RFC 7662 2.1).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow

#: Which resources each client may request tokens for.
client_resources = Table(
    "client_resources",
    db.metadata,
    Column("client_pk", ForeignKey("oauth_clients.id", ondelete="CASCADE"), primary_key=True),
    Column("resource_id", ForeignKey("api_resources.id", ondelete="CASCADE"), primary_key=True),
)


class ApiResource(db.Model):
    __tablename__ = "api_resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(String(2000), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # The resource server's own client (authenticates to /introspect), if any.
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    scopes: Mapped[list[ResourceScope]] = relationship(
        back_populates="resource",
        cascade="all, delete-orphan",
        order_by="ResourceScope.name",
    )


class ResourceScope(db.Model):
    """A scope that belongs to one resource; scope names are unique across resources."""

    __tablename__ = "resource_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(
        ForeignKey("api_resources.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")

    resource: Mapped[ApiResource] = relationship(back_populates="scopes")
