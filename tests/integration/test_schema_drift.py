"""The migrations build exactly the schema the models declare, on both databases.

A column added to a model without a migration (or a migration that differs from its
model) works in the tests that create tables from the models and fails in production,
which only runs migrations: Alembic's autogenerate comparison must find nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext


def test_migrated_schema_matches_the_models(app):
    from idp.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
