"""Extension objects, created unbound and attached to the app in ``create_app``.

Nothing here does work at import time (Flask's application factory pattern).
"""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Deterministic constraint names so Alembic migrations are identical on SQLite and
# PostgreSQL and can be altered later (batch mode needs named constraints).
_naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(
    metadata=MetaData(naming_convention=_naming), session_options={"expire_on_commit": False}
)
migrate = Migrate()
