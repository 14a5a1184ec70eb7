"""audit chain sealed in batches: chain position column

Revision ID: 0004_audit_seal
Revises: 0003_admin
Create Date: 2026-12-01 22:30:00.000000

Events are now written unsealed (no hash yet) and chained afterwards by the sealer
(idp.audit.seal), in the order it seals them: ``chain_seq`` is that position. Events
chained before this revision were chained in id order, so their position is their id.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0004_audit_seal"
down_revision = "0003_admin"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_chain_seq"), ["chain_seq"])
    op.execute("UPDATE audit_events SET chain_seq = id WHERE hash IS NOT NULL")


def downgrade():
    # The links (prev_hash) stay; an older release walks them in id order, so events
    # sealed out of id order since this revision show as a break in its verify.
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_chain_seq"), type_="unique")
        batch_op.drop_column("chain_seq")
