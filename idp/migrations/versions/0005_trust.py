"""trust: administrative lock, session-bound refresh tokens, registration attempts

Revision ID: 0005_trust
Revises: 0004_audit_seal
Create Date: 2026-12-04 19:00:00.000000

* ``users.admin_locked_until``: a lock set by the help desk or an administrator, kept
  apart from the failed-attempt lock (``locked_until``) so that a self-service password
  reset, which clears the latter, never lifts it.
* ``refresh_tokens.offline``: a refresh token granted with ``offline_access`` survives
  sign-out; any other is bound to its browser session (``sid``) and dies with it
  (OpenID Connect Core 11). Tokens issued before this revision keep working as they
  did when their scope holds ``offline_access``, and become session-bound otherwise.
* ``factor_ids`` on codes and refresh tokens: the second factors a sign-in used, so
  removing a factor ends the tokens earned with it.
* ``registration_attempts``: each New User Registration is an attempt of its own; the
  account is created only when the owner of the mailbox confirms one of them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0005_trust"
down_revision = "0004_audit_seal"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admin_locked_until", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("offline", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("factor_ids", sa.JSON(), nullable=True))
    op.execute("UPDATE refresh_tokens SET offline = true WHERE scope LIKE '%offline_access%'")

    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("factor_ids", sa.JSON(), nullable=True))

    op.create_table(
        "registration_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_attempts")),
    )
    with op.batch_alter_table("registration_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registration_attempts_email"), ["email"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_registration_attempts_expires_at"), ["expires_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("registration_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registration_attempts_expires_at"))
        batch_op.drop_index(batch_op.f("ix_registration_attempts_email"))
    op.drop_table("registration_attempts")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("factor_ids")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("factor_ids")
        batch_op.drop_column("offline")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("admin_locked_until")
