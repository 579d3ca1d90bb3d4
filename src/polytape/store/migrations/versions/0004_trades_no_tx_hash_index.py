"""trades: drop the index on transaction_hash

No query of polytape looks trades up by transaction hash (a fill's identity is its
``dedupe_key``), and the index cost about a fifth of every trade insert.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_trades_transaction_hash", table_name="trades")


def downgrade() -> None:
    op.create_index("ix_trades_transaction_hash", "trades", ["transaction_hash"], unique=False)
