"""administration: roles, reminders, audit hash chain, dynamic client registration

Revision ID: 0003_admin
Revises: 0002_factors
Create Date: 2026-11-28 04:30:00.000000

"""
import hashlib
import json
from datetime import UTC

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0003_admin"
down_revision = "0002_factors"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def _digest(row, prev_hash):
    """Chain format 1 (idp.models.audit.event_digest), frozen here for the backfill."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    body = {
        "v": 1,
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": row.event,
        "outcome": row.outcome,
        "user_id": row.user_id,
        "client_id": row.client_id,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "details": row.details or {},
        "prev_hash": prev_hash,
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=False, server_default='user'))
        batch_op.add_column(sa.Column('mfa_reminded_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('registered_dynamically', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('registration_access_token_hash', sa.String(length=64), nullable=True))

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_audit_events_prev_hash'), ['prev_hash'])

    op.create_table('registration_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=False),
    sa.Column('uses_left', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_registration_tokens_token_hash'))
    )

    # Chain the events recorded before this revision, oldest first.
    events = sa.table(
        'audit_events',
        sa.column('id', sa.Integer()), sa.column('at', sa.DateTime(timezone=True)),
        sa.column('event', sa.String()), sa.column('outcome', sa.String()),
        sa.column('user_id', sa.Integer()), sa.column('client_id', sa.String()),
        sa.column('ip', sa.String()), sa.column('user_agent', sa.String()),
        sa.column('details', sa.JSON()), sa.column('prev_hash', sa.String()),
        sa.column('hash', sa.String()),
    )
    conn = op.get_bind()
    prev = GENESIS_HASH
    for row in conn.execute(sa.select(events).order_by(events.c.id)).fetchall():
        digest = _digest(row, prev)
        conn.execute(
            events.update().where(events.c.id == row.id).values(prev_hash=prev, hash=digest)
        )
        prev = digest


def downgrade():
    op.drop_table('registration_tokens')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_events_prev_hash'), type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')

    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('registration_access_token_hash')
        batch_op.drop_column('registered_dynamically')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('mfa_reminded_at')
        batch_op.drop_column('role')
