"""client context: the pages say which application asks

Revision ID: 0006_client_context
Revises: 0005_trust
Create Date: 2026-12-04 20:40:00.000000

RFC 7591 section 2 client metadata the sign-in pages show next to the client's name:
``logo_uri``, ``client_uri`` (its home page), ``policy_uri`` and ``tos_uri``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0006_client_context"
down_revision = "0005_trust"
branch_labels = None
depends_on = None

COLUMNS = ("logo_uri", "client_uri", "policy_uri", "tos_uri")


def upgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
