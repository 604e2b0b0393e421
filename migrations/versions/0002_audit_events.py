"""The audit log (chapter 3): ``audit_events`` in every database, append-only by trigger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

The triggers refuse UPDATE and DELETE on the table, on PostgreSQL (a plpgsql function) and on
SQLite (``RAISE(ABORT)``). TRUNCATE and DROP TABLE are DDL-like and not refused: they need more
than the application's everyday statements, and the hash chain still shows a gap left by them.

SQLite's batch mode rebuilds a table to alter it, and the rebuild drops the table's triggers: a
later revision that alters ``audit_events`` in batch mode must create them again (see
``_create_triggers``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_REFUSED = "audit_events is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=50), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("entity_type", sa.String(length=50), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_workspace_id_sequence"),
            ["workspace_id", "sequence"],
            unique=True,
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_workspace_id_entity_type_entity_id_sequence"),
            ["workspace_id", "entity_type", "entity_id", "sequence"],
        )
        batch_op.create_index(batch_op.f("ix_audit_events_workspace_id_id"), ["workspace_id", "id"])
    _create_triggers()


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{_REFUSED}: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for statement in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{statement.lower()} BEFORE {statement} "
                f"ON audit_events BEGIN SELECT RAISE(ABORT, '{_REFUSED}: {statement} refused'); "
                "END"
            )


def downgrade() -> None:
    # Dropping the table drops its triggers on both engines; the function is PostgreSQL's own.
    op.drop_table("audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_events_append_only()")
