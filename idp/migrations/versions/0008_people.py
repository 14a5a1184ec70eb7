"""people: each user's language, and the passkey offer's last showing

Revision ID: 0008_people
Revises: 0007_apis
Create Date: 2026-12-04 21:35:00.000000

* ``users.locale``: the language of the pages, and of the emails and messages sent when
  no browser is present (reminders, lockout notices).
* ``users.passkey_offered_at``: "sign in faster next time" is offered at most monthly.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008_people"
down_revision = "0007_apis"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("passkey_offered_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("passkey_offered_at")
        batch_op.drop_column("locale")
