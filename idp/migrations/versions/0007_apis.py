"""APIs: resources and their scopes, groups, back-channel logout, CORS, jwks_uri, PAR

Revision ID: 0007_apis
Revises: 0006_client_context
Create Date: 2026-12-04 21:30:00.000000

* ``api_resources``, ``resource_scopes``, ``client_resources``: APIs named by RFC 8707
  resource indicators, the scopes that belong to each, and which clients may ask for
  them; ``resources`` on codes and refresh tokens records what a grant covers.
* ``groups``, ``group_members``: the ``groups`` claim.
* ``oauth_clients``: ``backchannel_logout_uri`` and
  ``backchannel_logout_session_required`` (OpenID Connect Back-Channel Logout 1.0 2.2),
  ``allowed_origins`` (CORS), ``jwks_uri`` (RFC 7591 2), ``require_par`` (RFC 9126 6).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0007_apis"
down_revision = "0006_client_context"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "api_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=2000), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["oauth_clients.client_id"],
            name=op.f("fk_api_resources_client_id_oauth_clients"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_resources")),
        sa.UniqueConstraint("uri", name=op.f("uq_api_resources_uri")),
    )
    op.create_index(op.f("ix_api_resources_client_id"), "api_resources", ["client_id"])

    op.create_table(
        "resource_scopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["api_resources.id"],
            name=op.f("fk_resource_scopes_resource_id_api_resources"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_scopes")),
        sa.UniqueConstraint("name", name=op.f("uq_resource_scopes_name")),
    )
    op.create_index(op.f("ix_resource_scopes_resource_id"), "resource_scopes", ["resource_id"])

    op.create_table(
        "client_resources",
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"], ["oauth_clients.id"],
            name=op.f("fk_client_resources_client_pk_oauth_clients"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["api_resources.id"],
            name=op.f("fk_client_resources_resource_id_api_resources"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_pk", "resource_id", name=op.f("pk_client_resources")),
    )

    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_group_members_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index(op.f("ix_group_members_user_id"), "group_members", ["user_id"])

    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backchannel_logout_uri", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "backchannel_logout_session_required", sa.Boolean(), nullable=False,
                server_default=sa.false(),
            )
        )
        batch_op.add_column(
            sa.Column("allowed_origins", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("require_par", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("resources")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("resources")
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        for name in ("require_par", "jwks_uri", "allowed_origins",
                     "backchannel_logout_session_required", "backchannel_logout_uri"):
            batch_op.drop_column(name)
    op.drop_index(op.f("ix_group_members_user_id"), table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_table("client_resources")
    op.drop_index(op.f("ix_resource_scopes_resource_id"), table_name="resource_scopes")
    op.drop_table("resource_scopes")
    op.drop_index(op.f("ix_api_resources_client_id"), table_name="api_resources")
    op.drop_table("api_resources")
