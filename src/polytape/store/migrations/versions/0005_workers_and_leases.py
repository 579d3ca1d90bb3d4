"""workers, token leases, and the worker of each job run

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import polytape.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tokens", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )
    op.create_table(
        "token_leases",
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("acquired_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_token_leases")),
    )
    with op.batch_alter_table("token_leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_leases_worker_id"), ["worker_id"], unique=False)
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_column("worker_id")
    with op.batch_alter_table("token_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_leases_worker_id"))
    op.drop_table("token_leases")
    op.drop_table("workers")
